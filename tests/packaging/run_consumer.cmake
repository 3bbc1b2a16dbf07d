# Configures, builds and runs a consumer project with the compiler, generator and
# build type of the main build.
#   cmake -D SOURCE_DIR=<consumer> -D BINARY_DIR=<scratch> -D GENERATOR=<gen>
#         -D CXX_COMPILER=<c++> [-D MAKE_PROGRAM=<ninja/make>] [-D BUILD_TYPE=<config>]
#         [-D PREFIX_PATH=<installed prefix>] [-D EIGEN3_DIR=<dir>] [-D TORCH_DIR=<dir>] [-D THRUST_DIR=<dir>]
#         [-D CHILDTUNE_SOURCE_DIR=<src>]
#         [-D EXPECT_CONFIGURE_ERROR=<regex>] -P run_consumer.cmake
# or include()d by a script that sets these variables and CONSUMER_CACHE_ARGS
# (a list of further -D arguments for the consumer's configure step).
# With EXPECT_CONFIGURE_ERROR the configure step must fail with output matching it.
foreach(_var IN ITEMS SOURCE_DIR BINARY_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "run_consumer.cmake: -D ${_var}=... is required")
  endif()
endforeach()

# A fresh tree each time: a cache left from an earlier run could hide a broken package.
file(REMOVE_RECURSE "${BINARY_DIR}")

set(_args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
if(MAKE_PROGRAM)
  list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(BUILD_TYPE)
  list(APPEND _args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
if(PREFIX_PATH)
  # Only the fresh prefix may provide childtune: no package registry, no system copy.
  list(APPEND _args "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}" "-Dchildtune_ROOT=${PREFIX_PATH}"
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
endif()
if(EIGEN3_DIR)
  list(APPEND _args "-DEigen3_DIR=${EIGEN3_DIR}")
endif()
if(TORCH_DIR)
  list(APPEND _args "-DTorch_DIR=${TORCH_DIR}")
endif()
if(THRUST_DIR)
  list(APPEND _args "-DThrust_DIR=${THRUST_DIR}")
endif()
if(CHILDTUNE_SOURCE_DIR)
  list(APPEND _args "-DCHILDTUNE_SOURCE_DIR=${CHILDTUNE_SOURCE_DIR}")
endif()

list(APPEND _args ${CONSUMER_CACHE_ARGS})

execute_process(COMMAND "${CMAKE_COMMAND}" ${_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(DEFINED EXPECT_CONFIGURE_ERROR)
  if(_rc EQUAL 0)
    message(FATAL_ERROR "configuring ${SOURCE_DIR} succeeded but should have failed:\n${_out}")
  endif()
  if(NOT _out MATCHES "${EXPECT_CONFIGURE_ERROR}")
    message(FATAL_ERROR "configuring ${SOURCE_DIR} failed without '${EXPECT_CONFIGURE_ERROR}':\n${_out}")
  endif()
  message(STATUS "configuring ${SOURCE_DIR} failed as expected")
  return()
endif()
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "configuring ${SOURCE_DIR} failed (${_rc}):\n${_out}")
endif()

set(_build_args --build "${BINARY_DIR}")
if(BUILD_TYPE)
  list(APPEND _build_args --config "${BUILD_TYPE}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" ${_build_args} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "building ${SOURCE_DIR} failed (${_rc}):\n${_out}")
endif()

execute_process(COMMAND "${BINARY_DIR}/bin/consumer" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "the consumer built from ${SOURCE_DIR} exited with ${_rc}:\n${_out}")
endif()
message(STATUS "consumer: ${_out}")
