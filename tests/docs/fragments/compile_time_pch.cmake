# Harness of docs/compile-time.md's precompiled-header fragment: a consumer
# project with the target the fragment names; configured and generated against
# the installed package by tests/docs/configure_consumer.cmake.
cmake_minimum_required(VERSION 3.21)
project(childtune_docs_pch LANGUAGES CXX)
find_package(childtune 0.1 CONFIG REQUIRED)
file(WRITE ${CMAKE_BINARY_DIR}/main.cpp "int main() { return 0; }\n")
add_executable(my_trainer ${CMAKE_BINARY_DIR}/main.cpp)
target_link_libraries(my_trainer PRIVATE childtune::childtune)

# FRAGMENT
