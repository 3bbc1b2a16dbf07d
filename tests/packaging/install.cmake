# Installs a configured childtune build tree into a fresh prefix (the fixture of
# the find_package tests) and checks that the package files are there.
#   cmake -D BUILD_DIR=<build> -D PREFIX=<prefix> -D CONFIG=<config> -P install.cmake
foreach(_var IN ITEMS BUILD_DIR PREFIX)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "install.cmake: -D ${_var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${PREFIX}")
set(_config_args)
if(CONFIG)
  set(_config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${_config_args}
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${_rc}):\n${_out}")
endif()

file(GLOB_RECURSE _configs "${PREFIX}/*/childtune-config.cmake")
file(GLOB_RECURSE _versions "${PREFIX}/*/childtune-config-version.cmake")
file(GLOB_RECURSE _targets "${PREFIX}/*/childtune-targets.cmake")
file(GLOB_RECURSE _eigen_targets "${PREFIX}/*/childtune-eigen-targets.cmake")
file(GLOB_RECURSE _torch_targets "${PREFIX}/*/childtune-torch-targets.cmake")
file(GLOB_RECURSE _mpi_targets "${PREFIX}/*/childtune-mpi-targets.cmake")
file(GLOB_RECURSE _pkg_config "${PREFIX}/*/pkgconfig/childtune.pc")
file(GLOB_RECURSE _eigen_pkg_config "${PREFIX}/*/pkgconfig/childtune-eigen.pc")
file(GLOB _core_headers "${PREFIX}/include/childtune/optimizer.hpp")
file(GLOB _eigen_headers "${PREFIX}/include/childtune/eigen.hpp")
file(GLOB _torch_headers "${PREFIX}/include/childtune/torch.hpp")
foreach(_what IN ITEMS configs versions targets eigen_targets torch_targets mpi_targets pkg_config eigen_pkg_config
                      core_headers eigen_headers torch_headers)
  list(LENGTH _${_what} _n)
  if(NOT _n EQUAL 1)
    message(FATAL_ERROR "expected one ${_what} file under ${PREFIX}, found ${_n}: ${_${_what}}")
  endif()
endforeach()
message(STATUS "installed childtune into ${PREFIX}")
