# install(): headers, the exported targets childtune::childtune, childtune::eigen,
# childtune::torch, childtune::thrust and (where MPI was found) childtune::mpi, and
# a package config with a version file, so that
# find_package(childtune CONFIG REQUIRED COMPONENTS eigen torch thrust mpi) works
# from the prefix.
include(CMakePackageConfigHelpers)

set(CHILDTUNE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/childtune"
    CACHE STRING "Where the package config files go, relative to the prefix")

# Headers only: editor and build leftovers in the source tree stay out of the prefix.
set(_childtune_header_patterns PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.cuh")
install(DIRECTORY include/childtune DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING ${_childtune_header_patterns})
install(DIRECTORY adapters/eigen/include/childtune DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING ${_childtune_header_patterns})
install(DIRECTORY adapters/torch/include/childtune DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING ${_childtune_header_patterns})
install(DIRECTORY adapters/thrust/include/childtune DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING ${_childtune_header_patterns})
install(DIRECTORY adapters/mpi/include/childtune DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING ${_childtune_header_patterns})

install(TARGETS childtune EXPORT childtune-targets)
install(EXPORT childtune-targets NAMESPACE childtune:: DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
install(TARGETS childtune_eigen EXPORT childtune-eigen-targets)
install(EXPORT childtune-eigen-targets NAMESPACE childtune:: DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
install(TARGETS childtune_torch EXPORT childtune-torch-targets)
install(EXPORT childtune-torch-targets NAMESPACE childtune:: DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
install(TARGETS childtune_thrust EXPORT childtune-thrust-targets)
install(EXPORT childtune-thrust-targets NAMESPACE childtune:: DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
# childtune::mpi links MPI::MPI_CXX, so it exists (and is exported) only where
# this build found MPI; the package config then says the component is missing.
if(TARGET childtune_mpi)
  install(TARGETS childtune_mpi EXPORT childtune-mpi-targets)
  install(EXPORT childtune-mpi-targets NAMESPACE childtune:: DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
endif()

configure_package_config_file(cmake/childtune-config.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/childtune-config.cmake
  INSTALL_DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
# Header-only: the version check must not compare pointer sizes.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/childtune-config-version.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/childtune-config.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/childtune-config-version.cmake
        DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
