# childtune/childtune.hpp includes every public header of the core: all of
# include/childtune/**.hpp except detail/ directories, the deprecated
# forwarding headers and itself.
#   cmake -D INCLUDE_DIR=<include> -P check_umbrella.cmake
file(GLOB_RECURSE headers RELATIVE ${INCLUDE_DIR} ${INCLUDE_DIR}/childtune/*.hpp)
list(FILTER headers EXCLUDE REGEX "/detail/|^childtune/childtune\\.hpp$|^childtune/(exec/compact_step|update/state_buffers)\\.hpp$")
file(READ ${INCLUDE_DIR}/childtune/childtune.hpp umbrella)
set(missing "")
foreach(header IN LISTS headers)
  string(FIND "${umbrella}" "#include <${header}>" at)
  if(at EQUAL -1)
    list(APPEND missing "${header}")
  endif()
endforeach()
if(missing)
  list(JOIN missing "\n  " missing)
  message(FATAL_ERROR "childtune/childtune.hpp does not include these public headers:\n  ${missing}")
endif()
list(LENGTH headers n)
message(STATUS "childtune/childtune.hpp includes all ${n} public headers of the core")
