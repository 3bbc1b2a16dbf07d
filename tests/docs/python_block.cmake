# The script of a ```python block of the docs (tests/docs/README.md):
#
#   childtune_python_script(<out> BODY <block> LINE <fence line> WHERE <file:line>
#                           [HARNESS <text of tests/docs/fragments/NAME.py>])
#
# Without a harness the block is the whole script, after one empty line per
# line above the block, so a traceback's line numbers are the Markdown file's.
# With one, the harness's line `# FRAGMENT` is replaced by a comment naming
# the block's place and the block itself.
function(childtune_python_script out)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "BODY;LINE;WHERE;HARNESS" "")
  if(DEFINED arg_HARNESS AND NOT arg_HARNESS STREQUAL "")
    string(REPLACE "\n# FRAGMENT\n" "\n# ${arg_WHERE}\n${arg_BODY}" script "${arg_HARNESS}")
  else()
    string(REPEAT "\n" ${arg_LINE} pad)
    set(script "${pad}${arg_BODY}")
  endif()
  set(${out} "${script}" PARENT_SCOPE)
endfunction()

# The modules among childtune, numpy and torch that a script imports at top
# level (`import x`, `import x.y`, `from x import ...`, `import a, x`), in <out>.
function(childtune_python_needs out script)
  set(needs "")
  foreach(module IN ITEMS childtune numpy torch)
    if(script MATCHES "(^|\n)[ \t]*(import|from)[ \t]+([A-Za-z0-9_.]+[ \t]*,[ \t]*)*${module}([ \t.,\n]|$)")
      list(APPEND needs ${module})
    endif()
  endforeach()
  set(${out} "${needs}" PARENT_SCOPE)
endfunction()
