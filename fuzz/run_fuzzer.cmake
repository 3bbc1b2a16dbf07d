# A time-boxed fuzz run from a copy of the committed corpus (the committed files
# are never rewritten by a run). Run by ctest as fuzz/<target>/run.
#   -D FUZZER=<binary> -D CORPUS=<dir> -D WORK=<dir> -D SECONDS=<n> -D ARTIFACTS=<dir/>
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(GLOB seeds "${CORPUS}/*")
if(NOT seeds)
  message(FATAL_ERROR "no seed corpus in ${CORPUS}")
endif()
file(COPY ${seeds} DESTINATION "${WORK}")
execute_process(
  COMMAND "${FUZZER}" -max_total_time=${SECONDS} -timeout=20 -rss_limit_mb=2048 -max_len=65536
          -print_final_stats=1 -artifact_prefix=${ARTIFACTS} "${WORK}"
  RESULT_VARIABLE rc)
file(GLOB corpus_after "${WORK}/*")
list(LENGTH seeds seed_count)
list(LENGTH corpus_after corpus_count)
message(STATUS "corpus: ${seed_count} seeds -> ${corpus_count} inputs after the run")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} found a failing input (exit ${rc}); it is under ${ARTIFACTS}")
endif()
