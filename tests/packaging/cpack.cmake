# Builds the .deb and the .tar.gz with CPack from a configured childtune tree,
# checks the .deb's control fields, and unpacks each into a scratch root (no
# system install): <OUT_DIR>/deb-root/usr and <OUT_DIR>/tgz-root/childtune-<version>
# are then prefixes for the consumers.
#   cmake -D CPACK=<cpack> -D DPKG_DEB=<dpkg-deb> -D BUILD_DIR=<configured tree> -D OUT_DIR=<scratch>
#         -D VERSION=<project version> -P cpack.cmake
foreach(_var IN ITEMS CPACK DPKG_DEB BUILD_DIR OUT_DIR VERSION)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "cpack.cmake: -D ${_var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${_rc}):\n${_out}")
  endif()
endfunction()

file(REMOVE_RECURSE "${OUT_DIR}")
file(MAKE_DIRECTORY "${OUT_DIR}/packages" "${OUT_DIR}/deb-root" "${OUT_DIR}/tgz-root")
foreach(_generator IN ITEMS DEB TGZ)
  run("cpack -G ${_generator}" "${CPACK}" -G ${_generator} --config "${BUILD_DIR}/CPackConfig.cmake" -B "${OUT_DIR}/packages")
endforeach()

set(_deb "${OUT_DIR}/packages/libchildtune-dev_${VERSION}_all.deb")
set(_tgz "${OUT_DIR}/packages/childtune-${VERSION}.tar.gz")
foreach(_package IN ITEMS "${_deb}" "${_tgz}")
  if(NOT EXISTS "${_package}")
    file(GLOB _made "${OUT_DIR}/packages/*.*")
    message(FATAL_ERROR "cpack did not make ${_package}; it made: ${_made}")
  endif()
endforeach()

# The .deb's control fields: a header-only -dev package of this version.
foreach(_field_value IN ITEMS "Package=libchildtune-dev" "Version=${VERSION}" "Architecture=all" "Section=libdevel")
  string(REPLACE "=" ";" _pair "${_field_value}")
  list(GET _pair 0 _field)
  list(GET _pair 1 _expected)
  execute_process(COMMAND "${DPKG_DEB}" -f "${_deb}" ${_field} OUTPUT_VARIABLE _value OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _value STREQUAL _expected)
    message(FATAL_ERROR "the .deb's ${_field} is '${_value}', expected '${_expected}'")
  endif()
endforeach()

run("dpkg-deb -x" "${DPKG_DEB}" -x "${_deb}" "${OUT_DIR}/deb-root")
run("untar" "${CMAKE_COMMAND}" -E chdir "${OUT_DIR}/tgz-root" "${CMAKE_COMMAND}" -E tar xzf "${_tgz}")

foreach(_prefix IN ITEMS "${OUT_DIR}/deb-root/usr" "${OUT_DIR}/tgz-root/childtune-${VERSION}")
  foreach(_file IN ITEMS include/childtune/childtune.hpp include/childtune/eigen.hpp include/childtune/torch.hpp
                         include/childtune/thrust.hpp include/childtune/mpi.hpp
                         share/cmake/childtune/childtune-config.cmake share/pkgconfig/childtune.pc
                         share/pkgconfig/childtune-eigen.pc)
    if(NOT EXISTS "${_prefix}/${_file}")
      message(FATAL_ERROR "the package unpacked into ${_prefix} has no ${_file}")
    endif()
  endforeach()
endforeach()
message(STATUS "packed and unpacked ${_deb} and ${_tgz}")
