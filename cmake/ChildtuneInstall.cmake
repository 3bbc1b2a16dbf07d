# install(): headers, the exported targets childtune::childtune, childtune::eigen,
# childtune::torch, childtune::thrust and childtune::mpi, a package config with a
# version file, so that
# find_package(childtune CONFIG REQUIRED COMPONENTS eigen torch thrust mpi) works
# from the prefix, and pkg-config files for the core and the Eigen adapter.
# Everything is header-only and found relative to the prefix it lands in, so the
# same files serve `cmake --install --prefix`, the .deb and the .tar.gz.
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
install(TARGETS childtune_mpi EXPORT childtune-mpi-targets)
install(EXPORT childtune-mpi-targets NAMESPACE childtune:: DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})

configure_package_config_file(cmake/childtune-config.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/childtune-config.cmake
  INSTALL_DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})
# Header-only: the version check must not compare pointer sizes.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/childtune-config-version.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/childtune-config.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/childtune-config-version.cmake
        DESTINATION ${CHILDTUNE_INSTALL_CMAKEDIR})

# pkg-config: childtune (the core) and childtune-eigen (adds eigen3.pc). The
# LibTorch, Thrust and MPI adapters have no .pc: LibTorch and Thrust ship none,
# and MPI's name differs per implementation; use CMake for them. Cflags carry
# -std=c++20 (g++ 12 and clang 14 default to C++17) and, when this build found
# OpenMP, the OpenMP flag, as childtune::childtune does in CMake; a consumer that
# wants a later standard puts its own -std after them.
set(CHILDTUNE_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Where the pkg-config files go, relative to the prefix")
# The prefix is found from where the .pc file lies (${pcfiledir}), so that an
# unpacked .tar.gz or a scratch prefix works without editing it.
if(IS_ABSOLUTE "${CHILDTUNE_INSTALL_PKGCONFIGDIR}")
  set(_childtune_pc_prefix "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _childtune_pc_prefix "/p/${CHILDTUNE_INSTALL_PKGCONFIGDIR}" "/p")
  string(REGEX REPLACE "/$" "" _childtune_pc_prefix "${_childtune_pc_prefix}")
  set(_childtune_pc_prefix "\${pcfiledir}/${_childtune_pc_prefix}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(_childtune_pc_includedir "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(_childtune_pc_includedir "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
set(_childtune_pc_openmp "")
if(CHILDTUNE_WITH_OPENMP)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    set(_childtune_pc_openmp " -fopenmp") # what g++ and clang++ both understand
  else()
    set(_childtune_pc_openmp " ${OpenMP_CXX_FLAGS}")
  endif()
endif()
configure_file(cmake/childtune.pc.in ${CMAKE_CURRENT_BINARY_DIR}/childtune.pc @ONLY)
configure_file(cmake/childtune-eigen.pc.in ${CMAKE_CURRENT_BINARY_DIR}/childtune-eigen.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/childtune.pc ${CMAKE_CURRENT_BINARY_DIR}/childtune-eigen.pc
        DESTINATION ${CHILDTUNE_INSTALL_PKGCONFIGDIR})
