# Configure finds only what is asked for: childtune configured with its tests,
# examples, benchmarks and fuzzers off (as a packager, or a consumer that only
# installs it, does) must not look for LibTorch, MPI, Thrust or a CUDA compiler.
# The configure runs in trace mode and every find_package() call is read back
# from the trace; the configured tree is then the one packaging/cpack packs.
#   cmake -D SOURCE_DIR=<src> -D BINARY_DIR=<scratch> -D GENERATOR=<gen> -D CXX_COMPILER=<c++>
#         [-D MAKE_PROGRAM=<ninja/make>] -P configure_minimal.cmake
foreach(_var IN ITEMS SOURCE_DIR BINARY_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "configure_minimal.cmake: -D ${_var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")
set(_trace "${BINARY_DIR}/configure-trace.txt")
set(_args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    -DCHILDTUNE_BUILD_TESTS=OFF -DCHILDTUNE_BUILD_EXAMPLES=OFF -DCHILDTUNE_BUILD_BENCHMARKS=OFF
    -DCHILDTUNE_BUILD_FUZZERS=OFF --trace-expand "--trace-redirect=${_trace}")
if(MAKE_PROGRAM)
  list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" ${_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "configuring ${SOURCE_DIR} with tests, examples, benchmarks and fuzzers off failed (${_rc}):\n${_out}")
endif()

# A trace line of a call reads "<file>(<line>):  <command>(<arguments>)".
file(STRINGS "${_trace}" _calls REGEX "\\):  +(find_package|check_language|enable_language) *\\(")
if(NOT _calls MATCHES "find_package\\(Eigen3 ")
  # childtune::eigen always looks for Eigen: without its call the trace says nothing.
  message(FATAL_ERROR "no find_package(Eigen3) in the trace ${_trace}: the check cannot see find_package calls")
endif()
set(_unwanted)
foreach(_call IN LISTS _calls)
  if(_call MATCHES "find_package\\( *(Torch|MPI|Thrust|CUDAToolkit)[ )]|(check|enable)_language\\( *CUDA")
    list(APPEND _unwanted "${_call}")
  endif()
endforeach()
if(_unwanted)
  list(JOIN _unwanted "\n  " _unwanted)
  message(FATAL_ERROR "with tests, examples, benchmarks and fuzzers off, configure still searched:\n  ${_unwanted}")
endif()
string(REGEX MATCHALL "find_package\\( *[A-Za-z0-9_]+" _searched "${_calls}")
string(REGEX REPLACE "find_package\\( *" "" _searched "${_searched}")
list(REMOVE_DUPLICATES _searched)
list(JOIN _searched ", " _searched)
message(STATUS "configure looked for ${_searched}; not for LibTorch, MPI, Thrust or CUDA")
