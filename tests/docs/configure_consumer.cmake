# A cmake block of the docs inside its harness (a consumer's CMakeLists.txt):
# configured and generated against the installed package. Generating proves
# that find_package(childtune ...) and its components succeed and that every
# target the block names exists (CMake stops at an unknown childtune::x); the
# targets are not built, because compiling C++ against the package is what the
# packaging/* consumers and the cpp blocks already do (CI time).
#   cmake -D SOURCE_DIR -D BINARY_DIR -D GENERATOR -D CXX_COMPILER [-D MAKE_PROGRAM]
#         -D PREFIX_PATH [-D EIGEN3_DIR] [-D TORCH_DIR] [-D THRUST_DIR] -D WHERE -P configure_consumer.cmake
file(REMOVE_RECURSE "${BINARY_DIR}")
set(args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
         "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}" "-Dchildtune_ROOT=${PREFIX_PATH}"
         -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(MAKE_PROGRAM)
  list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
foreach(dir IN ITEMS Eigen3 Torch Thrust)
  string(TOUPPER "${dir}_DIR" var)
  if(${var})
    list(APPEND args "-D${dir}_DIR=${${var}}")
  endif()
endforeach()
execute_process(COMMAND "${CMAKE_COMMAND}" ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: the consumer project with this block does not configure (${rc}):\n${out}")
endif()
message(STATUS "${WHERE}: configured and generated against the installed package")
