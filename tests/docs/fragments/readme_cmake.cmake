# Harness of README.md's CMake fragment: a consumer project that defines the
# targets the fragment links; configured and generated (not built) against the
# installed package by tests/docs/configure_consumer.cmake.
cmake_minimum_required(VERSION 3.21)
project(childtune_docs_cmake LANGUAGES CXX)
file(WRITE ${CMAKE_BINARY_DIR}/main.cpp "int main() { return 0; }\n")
foreach(target IN ITEMS my_trainer my_ranks my_cuda_trainer)
  add_executable(${target} ${CMAKE_BINARY_DIR}/main.cpp)
endforeach()

# FRAGMENT
