# Self-test of tests/docs/markdown_blocks.cmake on blocks.md: every block found,
# with its line, kind, marker and exact body (brackets, semicolons, backslashes,
# indentation, nested fences), and an unclosed fence reported.
#   cmake -P check_parser.cmake
include(${CMAKE_CURRENT_LIST_DIR}/../markdown_blocks.cmake)
function(record line kind marker body error)
  string(REPLACE "\n" "|" body "${body}")
  string(REPLACE ";" "<semicolon>" body "${body}")
  string(REPLACE ";" "<semicolon>" marker "${marker}")
  set_property(GLOBAL APPEND_STRING PROPERTY ctd_found "${line} [${kind}] [${marker}] [${body}] [${error}]\n")
endfunction()
childtune_markdown_blocks(${CMAKE_CURRENT_LIST_DIR}/blocks.md record)
get_property(found GLOBAL PROPERTY ctd_found)
set(expected "5 [cpp] [] [int main() { int a[2] = {1, 2}<semicolon> return a[0] - 1<semicolon> } // brackets<semicolon> semicolons \\ backslash|] []
10 [cpp] [<!-- fragment: some_name -->] [x = y<semicolon>|] []
15 [sh] [] [./scripts/test.sh  # comment|] []
19 [text] [] [```cpp|not a block: inside a longer fence|```|] []
25 [] [] [no language|] []
29 [python] [] [print(\"tilde\")|] []
33 [cmake] [] [never closed||] [the fence opened here is never closed]
")
if(NOT found STREQUAL expected)
  message(FATAL_ERROR "markdown_blocks.cmake read blocks.md as\n${found}\ninstead of\n${expected}")
endif()
message(STATUS "markdown_blocks.cmake reads all 7 blocks of the fixture correctly")
