# CPack: what `cmake --install` puts in a prefix, as a Debian package
# (libchildtune-dev_<version>_all.deb, installed under /usr) and a relocatable
# .tar.gz (childtune-<version>.tar.gz, one top-level directory of that name):
#   cmake -S . -B build/pkg -DCHILDTUNE_BUILD_TESTS=OFF -DCHILDTUNE_BUILD_EXAMPLES=OFF \
#         -DCHILDTUNE_BUILD_BENCHMARKS=OFF && cd build/pkg && cpack
# The library is header-only, so the packages are architecture-independent and
# nothing is built first.
set(CPACK_PACKAGE_NAME childtune)
set(CPACK_PACKAGE_VENDOR childtune)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_FILE_NAME "childtune-${PROJECT_VERSION}") # no system name: nothing in it is specific to one
set(CHILDTUNE_PACKAGE_MAINTAINER "childtune maintainers" CACHE STRING
    "The packages' maintainer, 'Name <email>' (the .deb's Maintainer field)")
set(CPACK_PACKAGE_CONTACT "${CHILDTUNE_PACKAGE_MAINTAINER}")
if(NOT CPACK_GENERATOR)
  set(CPACK_GENERATOR DEB TGZ)
endif()

# Debian: a -dev package of headers. Its Depends are empty because the core needs
# only a C++20 compiler (with OpenMP when the package's build found it: g++ ships
# libgomp; clang++ needs libomp-dev). Each adapter's library is the consumer's
# choice, so it is suggested, and the package config or childtune-eigen.pc finds
# it when the adapter is asked for.
set(CPACK_DEBIAN_PACKAGE_NAME libchildtune-dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS
    "libeigen3-dev (>= 3.3), libtorch-dev (>= 1.13), libopenmpi-dev | mpi-default-dev, pkgconf")
# The summary line comes from CPACK_PACKAGE_DESCRIPTION_SUMMARY.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Header-only C++20 library: Child-Tuning_F and Child-Tuning_D (Xu et al.,\nEMNLP 2021) for plain buffers, with adapters for Eigen, LibTorch, Thrust and\nMPI. CMake: find_package(childtune CONFIG COMPONENTS ...); pkg-config:\nchildtune, childtune-eigen.")

include(CPack)
