# The FetchContent consumer (fetch_content/) against a git repository made from
# this source tree, so that the working tree is what is tested, not the last
# commit, and no network is needed. The repository holds what a consumer's build
# reads (a clone has more); that nothing else is needed is part of the test.
#   cmake -D CHILDTUNE_SOURCE_DIR=<src> -D GIT=<git> <run_consumer.cmake's arguments> -P fetch_content.cmake
foreach(_var IN ITEMS CHILDTUNE_SOURCE_DIR GIT BINARY_DIR)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "fetch_content.cmake: -D ${_var}=... is required")
  endif()
endforeach()

set(_repo "${BINARY_DIR}-repository")
file(REMOVE_RECURSE "${_repo}")
file(MAKE_DIRECTORY "${_repo}")
file(COPY "${CHILDTUNE_SOURCE_DIR}/CMakeLists.txt" "${CHILDTUNE_SOURCE_DIR}/cmake" "${CHILDTUNE_SOURCE_DIR}/include"
          "${CHILDTUNE_SOURCE_DIR}/adapters" DESTINATION "${_repo}")

# No user configuration (identity, hooks, signing) may change what is committed.
set(_git "${GIT}" -C "${_repo}" -c user.name=childtune-test -c user.email=childtune-test@localhost
    -c commit.gpgsign=false -c core.hooksPath=/dev/null)
foreach(_step IN ITEMS "init -q" "add -A" "commit -q -m consumer-test")
  separate_arguments(_step_args UNIX_COMMAND "${_step}")
  execute_process(COMMAND ${_git} ${_step_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "git ${_step} in ${_repo} failed (${_rc}):\n${_out}")
  endif()
endforeach()
execute_process(COMMAND ${_git} rev-parse HEAD OUTPUT_VARIABLE _commit OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "git rev-parse HEAD in ${_repo} failed (${_rc})")
endif()

unset(CHILDTUNE_SOURCE_DIR) # the consumer gets childtune from the repository only
set(CONSUMER_CACHE_ARGS "-DCHILDTUNE_GIT_REPOSITORY=file://${_repo}" "-DCHILDTUNE_GIT_TAG=${_commit}")
include("${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake")
