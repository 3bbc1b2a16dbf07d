# Warnings for the project's own programs (tests, examples, benchmarks). The
# library targets are INTERFACE and never impose flags on their users.
add_library(childtune_warnings INTERFACE)
target_compile_options(childtune_warnings INTERFACE
  $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
if(CHILDTUNE_WARNINGS_AS_ERRORS)
  target_compile_options(childtune_warnings INTERFACE $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Werror>)
endif()

# Sanitizers for the project's own programs: CHILDTUNE_SANITIZE=address,undefined
# (or thread) builds every test, example and benchmark with them; UBSan findings
# abort (no recovery), so a finding fails its test. Run the tests with
# LSAN_OPTIONS=suppressions=tests/sanitizers/lsan.supp (scripts/test.sh does).
set(CHILDTUNE_SANITIZE "" CACHE STRING "Sanitizers for tests, examples and benchmarks (e.g. address,undefined or thread)")
if(CHILDTUNE_SANITIZE)
  target_compile_options(childtune_warnings INTERFACE
    $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-fsanitize=${CHILDTUNE_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer>
    # Instrumentation can stop `#pragma omp simd` loops from vectorising; that is not a bug.
    $<$<COMPILE_LANG_AND_ID:CXX,Clang>:-Wno-pass-failed>
    # Third-party code left uninstrumented, each entry justified in the file.
    $<$<COMPILE_LANG_AND_ID:CXX,Clang>:-fsanitize-ignorelist=${PROJECT_SOURCE_DIR}/tests/sanitizers/ubsan-ignorelist.txt>)
  target_link_options(childtune_warnings INTERFACE $<$<LINK_LANG_AND_ID:CXX,GNU,Clang>:-fsanitize=${CHILDTUNE_SANITIZE}>)
endif()
