# A consumer built the pkg-config way, as a user's Makefile would:
#   c++ main.cpp $(pkg-config --cflags --libs <package>) -Wall -Wextra -Werror
# with PKG_CONFIG_PATH pointing into a scratch prefix, then run. Checks that the
# .pc file resolves into that prefix (it is relocatable) and, for the core, that
# its version is the headers' version.
#   cmake -D PKG_CONFIG=<pkg-config> -D PREFIX=<prefix> -D PACKAGE=<childtune|childtune-eigen>
#         -D SOURCE=<main.cpp> -D BINARY_DIR=<scratch> -D CXX_COMPILER=<c++> -P pkg_config.cmake
foreach(_var IN ITEMS PKG_CONFIG PREFIX PACKAGE SOURCE BINARY_DIR CXX_COMPILER)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "pkg_config.cmake: -D ${_var}=... is required")
  endif()
endforeach()

file(GLOB _pc_dirs "${PREFIX}/*/pkgconfig")
list(LENGTH _pc_dirs _n)
if(NOT _n EQUAL 1 OR NOT EXISTS "${_pc_dirs}/childtune.pc")
  message(FATAL_ERROR "expected one pkgconfig directory with childtune.pc under ${PREFIX}, found: ${_pc_dirs}")
endif()
set(ENV{PKG_CONFIG_PATH} "${_pc_dirs}")

function(pkg_config out)
  execute_process(COMMAND "${PKG_CONFIG}" --print-errors ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                  ERROR_VARIABLE _err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "pkg-config ${ARGN} failed (${_rc}):\n${_out}${_err}")
  endif()
  set(${out} "${_out}" PARENT_SCOPE)
endfunction()

pkg_config(_includedir --variable=includedir childtune)
get_filename_component(_includedir "${_includedir}" REALPATH)
get_filename_component(_expected "${PREFIX}/include" REALPATH)
if(NOT _includedir STREQUAL _expected)
  message(FATAL_ERROR "childtune.pc in ${_pc_dirs} points at ${_includedir}, not at ${_expected}")
endif()
pkg_config(_version --modversion childtune)
pkg_config(_flags --cflags --libs ${PACKAGE})
separate_arguments(_flags UNIX_COMMAND "${_flags}")

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")
set(_compile "${CXX_COMPILER}" "${SOURCE}" -o "${BINARY_DIR}/consumer" ${_flags} -Wall -Wextra -Werror
             "-DCHILDTUNE_EXPECT_VERSION=\"${_version}\"")
execute_process(COMMAND ${_compile} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  string(JOIN " " _shown ${_compile})
  message(FATAL_ERROR "${_shown}\nfailed (${_rc}):\n${_out}")
endif()
execute_process(COMMAND "${BINARY_DIR}/consumer" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "the consumer built with pkg-config ${PACKAGE} exited with ${_rc}:\n${_out}")
endif()
message(STATUS "consumer (pkg-config ${PACKAGE} ${_version}): ${_out}")
