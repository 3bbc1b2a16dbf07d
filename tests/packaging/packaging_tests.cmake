# The ways to consume childtune beyond find_package and add_subdirectory, each
# proved by a consumer that builds and runs: FetchContent from a git repository,
# pkg-config, and the .deb and .tar.gz made by CPack. Also: a configure with
# tests, examples, benchmarks and fuzzers off looks for no LibTorch, MPI, Thrust
# or CUDA. include()d by tests/CMakeLists.txt, which defines
# _childtune_consumer_args, _childtune_packaging_dir and _childtune_packaging_bin.
# The consumers are one small program each (one optimizer, one rule), unoptimised.
find_program(CHILDTUNE_GIT git)
find_program(CHILDTUNE_PKG_CONFIG NAMES pkg-config pkgconf)
find_program(CHILDTUNE_DPKG_DEB dpkg-deb)
set(_childtune_core_consumer ${_childtune_packaging_dir}/core/main.cpp)
set(_childtune_eigen_consumer ${_childtune_packaging_dir}/find_package/main.cpp)

if(CHILDTUNE_GIT)
  add_test(NAME packaging/fetch_content
           COMMAND ${CMAKE_COMMAND} ${_childtune_consumer_args} -D "GIT=${CHILDTUNE_GIT}"
                   -D "SOURCE_DIR=${_childtune_packaging_dir}/fetch_content"
                   -D "BINARY_DIR=${_childtune_packaging_bin}/fetch_content"
                   -D "CHILDTUNE_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
                   -P ${_childtune_packaging_dir}/fetch_content.cmake)
else()
  message(STATUS "childtune: git not found; the FetchContent consumer test is skipped")
endif()

# A sub-project that links childtune::torch without having found LibTorch first
# is told so by name when it configures.
add_test(NAME packaging/add_subdirectory_without_torch
         COMMAND ${CMAKE_COMMAND} ${_childtune_consumer_args}
                 -D "SOURCE_DIR=${_childtune_packaging_dir}/add_subdirectory_without_torch"
                 -D "BINARY_DIR=${_childtune_packaging_bin}/add_subdirectory_without_torch"
                 -D "CHILDTUNE_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
                 -D "EXPECT_CONFIGURE_ERROR=childtune::torch_needs_find_package_Torch_before_adding_childtune"
                 -P ${_childtune_packaging_dir}/run_consumer.cmake)

# pkg-config against the install prefix of packaging/install.
if(CHILDTUNE_PKG_CONFIG AND CHILDTUNE_INSTALL)
  foreach(_package IN ITEMS childtune childtune-eigen)
    if(_package STREQUAL "childtune")
      set(_source ${_childtune_core_consumer})
    else()
      set(_source ${_childtune_eigen_consumer})
    endif()
    add_test(NAME packaging/pkg_config_${_package}
             COMMAND ${CMAKE_COMMAND} -D "PKG_CONFIG=${CHILDTUNE_PKG_CONFIG}" -D "PACKAGE=${_package}"
                     -D "PREFIX=${_childtune_packaging_bin}/prefix" -D "SOURCE=${_source}"
                     -D "BINARY_DIR=${_childtune_packaging_bin}/pkg_config_${_package}"
                     -D "CXX_COMPILER=${CMAKE_CXX_COMPILER}" -P ${_childtune_packaging_dir}/pkg_config.cmake)
    set_tests_properties(packaging/pkg_config_${_package} PROPERTIES FIXTURES_REQUIRED childtune_installed)
  endforeach()
elseif(NOT CHILDTUNE_PKG_CONFIG)
  message(STATUS "childtune: pkg-config not found (Debian: pkgconf); the pkg-config consumer tests are skipped")
endif()

# A minimal configure (also the check that it searches for nothing unasked),
# then CPack packs that tree; each package is unpacked into a scratch root and a
# consumer is built against it with find_package (CMAKE_PREFIX_PATH into the
# root) and with pkg-config.
set(_childtune_minimal_tree ${_childtune_packaging_bin}/minimal_tree)
add_test(NAME packaging/configure_finds_only_what_is_asked
         COMMAND ${CMAKE_COMMAND} -D "GENERATOR=${CMAKE_GENERATOR}" -D "MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
                 -D "CXX_COMPILER=${CMAKE_CXX_COMPILER}" -D "SOURCE_DIR=${PROJECT_SOURCE_DIR}"
                 -D "BINARY_DIR=${_childtune_minimal_tree}" -P ${_childtune_packaging_dir}/configure_minimal.cmake)
set_tests_properties(packaging/configure_finds_only_what_is_asked PROPERTIES FIXTURES_SETUP childtune_minimal_tree)
if(CHILDTUNE_DPKG_DEB)
  set(_childtune_packages ${_childtune_packaging_bin}/packages)
  add_test(NAME packaging/cpack
           COMMAND ${CMAKE_COMMAND} -D "CPACK=${CMAKE_CPACK_COMMAND}" -D "DPKG_DEB=${CHILDTUNE_DPKG_DEB}"
                   -D "BUILD_DIR=${_childtune_minimal_tree}" -D "OUT_DIR=${_childtune_packages}"
                   -D "VERSION=${PROJECT_VERSION}" -P ${_childtune_packaging_dir}/cpack.cmake)
  set_tests_properties(packaging/cpack PROPERTIES FIXTURES_REQUIRED childtune_minimal_tree
                                                  FIXTURES_SETUP childtune_packages)
  foreach(_kind IN ITEMS deb tgz)
    if(_kind STREQUAL "deb")
      set(_root ${_childtune_packages}/deb-root/usr)
    else()
      set(_root ${_childtune_packages}/tgz-root/childtune-${PROJECT_VERSION})
    endif()
    add_test(NAME packaging/${_kind}_find_package
             COMMAND ${CMAKE_COMMAND} ${_childtune_consumer_args}
                     -D "SOURCE_DIR=${_childtune_packaging_dir}/find_package"
                     -D "BINARY_DIR=${_childtune_packaging_bin}/${_kind}_find_package"
                     -D "PREFIX_PATH=${_root}" -P ${_childtune_packaging_dir}/run_consumer.cmake)
    set(_tests packaging/${_kind}_find_package)
    if(CHILDTUNE_PKG_CONFIG)
      add_test(NAME packaging/${_kind}_pkg_config
               COMMAND ${CMAKE_COMMAND} -D "PKG_CONFIG=${CHILDTUNE_PKG_CONFIG}" -D "PACKAGE=childtune"
                       -D "PREFIX=${_root}" -D "SOURCE=${_childtune_core_consumer}"
                       -D "BINARY_DIR=${_childtune_packaging_bin}/${_kind}_pkg_config"
                       -D "CXX_COMPILER=${CMAKE_CXX_COMPILER}" -P ${_childtune_packaging_dir}/pkg_config.cmake)
      list(APPEND _tests packaging/${_kind}_pkg_config)
    endif()
    set_tests_properties(${_tests} PROPERTIES FIXTURES_REQUIRED childtune_packages)
  endforeach()
else()
  message(STATUS "childtune: dpkg-deb not found; the CPack package tests are skipped")
endif()
