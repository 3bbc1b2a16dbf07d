# Runs the script of one ```python block of the docs with the interpreter
# CHILDTUNE_PYTHON, in a fresh empty working directory, with
# CHILDTUNE_SOURCE_DIR naming the source tree and no input:
#   cmake -D PYTHON=<interpreter> -D SCRIPT=<block.py> -D SOURCE_DIR=<tree>
#         -D WORK_DIR=<scratch> -D WHERE=<file:line> -P run_python.cmake
# It must exit 0 within 2 minutes.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(COMMAND "${CMAKE_COMMAND}" -E env "CHILDTUNE_SOURCE_DIR=${SOURCE_DIR}" PYTHONDONTWRITEBYTECODE=1
                        "${PYTHON}" "${SCRIPT}"
                WORKING_DIRECTORY "${WORK_DIR}" INPUT_FILE /dev/null TIMEOUT 120
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: the python block exited with '${rc}' (script ${SCRIPT}):\n${out}")
endif()
message(STATUS "${WHERE}: runs:\n${out}")
