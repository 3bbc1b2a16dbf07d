# The Thrust adapter's CUDA programs (tests and GPU benchmarks). CUDA is optional:
# without nvcc nothing here is built, and the adapter is still tested on Thrust's
# CPP and OMP systems. With nvcc but no GPU (CI) the CUDA programs are compiled
# and linked, which catches device-code errors, and ctest runs them only where a
# GPU answers.
#
# Sets CHILDTUNE_HAVE_CUDA and CHILDTUNE_RUN_CUDA_TESTS, and defines
# childtune_cuda_program(<target>) for the targets that use it.
option(CHILDTUNE_WITH_CUDA "Build the Thrust adapter's CUDA tests and GPU benchmarks when nvcc is found" ON)
set(CHILDTUNE_HAVE_CUDA OFF)

# nvcc uses the system g++ as its host compiler; a clang build tree would mix two
# host compilers in one program, so only a GNU build tree builds CUDA.
if(CHILDTUNE_WITH_CUDA AND CHILDTUNE_HAVE_THRUST AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    execute_process(COMMAND nvidia-smi -L RESULT_VARIABLE _childtune_smi OUTPUT_QUIET ERROR_QUIET)
    if(_childtune_smi EQUAL 0)
      set(_childtune_gpu ON)
    else()
      set(_childtune_gpu OFF)
    endif()
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      if(_childtune_gpu)
        set(CMAKE_CUDA_ARCHITECTURES 80 90) # A100 and H100/H200
      else()
        # Nothing will run: one architecture, machine code only, is enough to
        # catch device-code errors, at two thirds of the compile time (CI).
        set(CMAKE_CUDA_ARCHITECTURES 90-real)
      endif()
    endif()
    if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
      set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc's C++20 mode; nvcc has had it since 12.0.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    thrust_create_target(childtune_thrust_on_cuda HOST CPP DEVICE CUDA)
    set(CHILDTUNE_HAVE_CUDA ON)

    option(CHILDTUNE_RUN_CUDA_TESTS "Register the CUDA tests with ctest (default: when nvidia-smi sees a GPU)" ${_childtune_gpu})
    message(STATUS "childtune: nvcc ${CMAKE_CUDA_COMPILER_VERSION} found; CUDA programs built for "
                   "${CMAKE_CUDA_ARCHITECTURES}; run by ctest: ${CHILDTUNE_RUN_CUDA_TESTS}")
  else()
    message(STATUS "childtune: nvcc not found; the Thrust adapter's CUDA programs are skipped")
  endif()
endif()
if(NOT CHILDTUNE_HAVE_CUDA)
  set(CHILDTUNE_RUN_CUDA_TESTS OFF)
endif()

# childtune_cuda_program(<target>): C++20 CUDA, Thrust on the CUDA system, the
# adapter, warnings (as errors when asked) for both nvcc and its host compiler.
function(childtune_cuda_program target)
  set_target_properties(${target} PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  target_link_libraries(${target} PRIVATE childtune::thrust childtune_thrust_on_cuda)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
  if(CHILDTUNE_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
  endif()
endfunction()
