# Fails when a header of the library or its adapters is longer than LIMIT lines:
# a header has one job, and one that outgrows the limit is split (house rule).
#   cmake -DROOT=<source dir> -DLIMIT=400 -P check_length.cmake
file(GLOB_RECURSE headers RELATIVE ${ROOT} ${ROOT}/include/*.hpp ${ROOT}/include/*.cuh
     ${ROOT}/adapters/*/include/*.hpp ${ROOT}/adapters/*/include/*.cuh)
set(too_long)
foreach(header IN LISTS headers)
  file(READ ${ROOT}/${header} text)
  # file(STRINGS) drops empty lines: count newlines instead.
  string(REGEX REPLACE "[^\n]" "" newlines "${text}")
  string(LENGTH "${newlines}" count)
  if(count GREATER LIMIT)
    list(APPEND too_long "${header} (${count} lines)")
  endif()
endforeach()
list(LENGTH headers checked)
if(checked EQUAL 0)
  message(FATAL_ERROR "no header found under ${ROOT}/include or ${ROOT}/adapters")
endif()
if(too_long)
  list(JOIN too_long "\n  " report)
  message(FATAL_ERROR "headers above ${LIMIT} lines (split them, one job per header):\n  ${report}")
endif()
message(STATUS "${checked} headers, none above ${LIMIT} lines")
