# The README's first program, built as a newcomer pastes and builds it: one
# compiler command with exactly -std=c++20 -O2 -Wall -Wextra (and -I for the
# headers), no CMake. Any output of the compiler (a warning, a note) fails the
# test; then the program must run and exit 0.
#   cmake -D COMPILER=<c++> -D SOURCE=<block.cpp> -D INCLUDE_DIR=<include> -D WORK_DIR=<scratch>
#         -D WHERE=<file:line> -D FIRST_LINE=<line of the block's first line> -P standalone.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(command "${COMPILER}" -std=c++20 -O2 -Wall -Wextra "-I${INCLUDE_DIR}" "${SOURCE}" -o "${WORK_DIR}/program")
list(JOIN command " " shown)
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out STREQUAL "" OR NOT err STREQUAL "")
  message(FATAL_ERROR "${WHERE}: the program must build without any diagnostic; line 1 of ${SOURCE} "
                      "is line ${FIRST_LINE} of the Markdown file.\n${shown}\nexit code ${rc}\n${out}${err}")
endif()
execute_process(COMMAND "${WORK_DIR}/program" WORKING_DIRECTORY "${WORK_DIR}" TIMEOUT 60
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: the program exited with '${rc}':\n${out}")
endif()
message(STATUS "${shown}: no diagnostic; the program ran:\n${out}")
