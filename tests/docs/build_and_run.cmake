# Builds the target of one C++ block of the docs and, when it is a program, runs
# it in a scratch directory:
#   cmake -D BUILD_DIR=<build tree> -D TARGET=<target> -D CONFIG=<config>
#         [-D PROGRAM=<executable>] -D WORK_DIR=<scratch> -D WHERE=<file:line> -P build_and_run.cmake
# Compiler messages point into the Markdown file (the generated source carries
# #line directives), e.g. "README.md:80:5: error: ...".
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target "${TARGET}" --config "${CONFIG}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: the code block does not compile:\n${out}")
endif()
if(NOT PROGRAM)
  message(STATUS "${WHERE}: compiles")
  return()
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(COMMAND "${PROGRAM}" WORKING_DIRECTORY "${WORK_DIR}" TIMEOUT 120
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: the program of the code block exited with '${rc}':\n${out}")
endif()
message(STATUS "${WHERE}: compiles and runs:\n${out}")
