# Self-test of the ```python blocks (python_block.cmake, run_python.cmake): a
# block alone keeps its Markdown line numbers, a fragment replaces its
# harness's `# FRAGMENT` line, the script runs in an empty directory with
# CHILDTUNE_SOURCE_DIR set and no input, a failing block fails naming its
# place, and the imports a block needs are found.
#   cmake -D PYTHON=<interpreter> -D SOURCE_DIR=<tree> -D WORK_DIR=<scratch> -P check_python.cmake
include(${CMAKE_CURRENT_LIST_DIR}/../python_block.cmake)
set(run ${CMAKE_CURRENT_LIST_DIR}/../run_python.cmake)
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(expect what got expected)
  if(NOT got STREQUAL expected)
    message(FATAL_ERROR "${what}:\n[${got}]\ninstead of\n[${expected}]")
  endif()
endfunction()
function(run_block name script expect_rc)
  file(WRITE "${WORK_DIR}/${name}.py" "${script}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -DPYTHON=${PYTHON} -DSCRIPT=${WORK_DIR}/${name}.py -DSOURCE_DIR=${SOURCE_DIR}
                          -DWORK_DIR=${WORK_DIR}/${name} -DWHERE=doc.md:${name} -P ${run}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(expect_rc EQUAL 0 AND NOT rc EQUAL 0)
    message(FATAL_ERROR "block ${name} should pass:\n${out}")
  elseif(NOT expect_rc EQUAL 0 AND rc EQUAL 0)
    message(FATAL_ERROR "block ${name} should fail:\n${out}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

# A block alone: padded to its Markdown lines (a traceback names line 4).
childtune_python_script(alone BODY "x = [1]; y = {'a': 1}\nraise SystemExit(x[0] - 1 + y['a'] - 1)\n" LINE 2 WHERE doc.md:2)
expect("a block alone" "${alone}" "\n\nx = [1]; y = {'a': 1}\nraise SystemExit(x[0] - 1 + y['a'] - 1)\n")
run_block(alone "${alone}" 0)
childtune_python_script(failing BODY "a = 1\nraise RuntimeError('boom [x]')\n" LINE 2 WHERE doc.md:2)
run_block(failing "${failing}" 1)
if(NOT run_output MATCHES "doc.md:failing: the python block exited" OR NOT run_output MATCHES "line 4" OR
   NOT run_output MATCHES "boom \\[x\\]")
  message(FATAL_ERROR "a failing block's message should name its place, its traceback line 4 and its error:\n${run_output}")
endif()

# A fragment: the harness's marker line replaced; the environment of the run.
file(READ ${CMAKE_CURRENT_LIST_DIR}/python/harness.py harness)
childtune_python_script(fragment BODY "value = helper([3, 4])\n" LINE 7 WHERE doc.md:7 HARNESS "${harness}")
string(REPLACE "\n# FRAGMENT\n" "\n# doc.md:7\nvalue = helper([3, 4])\n" expected "${harness}")
expect("a fragment" "${fragment}" "${expected}")
run_block(fragment "${fragment}" 0)
file(GLOB left "${WORK_DIR}/fragment/*")
expect("files the fragment's harness writes in its working directory" "${left}" "${WORK_DIR}/fragment/written.txt")

# The modules a block needs.
childtune_python_needs(needs "import os\nimport numpy as np\nfrom childtune import ChildTuningAdamW\n")
expect("needs of numpy + childtune" "${needs}" "childtune;numpy")
childtune_python_needs(needs "import os, torch.nn\nx = 'import numpy'\n")
expect("needs of torch" "${needs}" "torch")
message(STATUS "python blocks: script, fragment, environment, failure and needs checked")
