# Warnings for the project's own programs (tests, examples, benchmarks). The
# library targets are INTERFACE and never impose flags on their users.
add_library(childtune_warnings INTERFACE)
target_compile_options(childtune_warnings INTERFACE
  $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
if(CHILDTUNE_WARNINGS_AS_ERRORS)
  target_compile_options(childtune_warnings INTERFACE $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Werror>)
endif()
