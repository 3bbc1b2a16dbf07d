# The API reference: `cmake --build <build> --target docs` runs Doxygen over the
# public headers (docs/Doxyfile.in) into <build>/docs/api/html. Any Doxygen
# warning (an undocumented public entity, a broken reference) fails the target.
# Defined only for a top-level build (an add_subdirectory() user may have a docs
# target of their own) and only when Doxygen is found (Debian: the doxygen package).
if(NOT PROJECT_IS_TOP_LEVEL)
  return()
endif()
find_package(Doxygen 1.9 QUIET)
if(NOT DOXYGEN_FOUND)
  message(STATUS "childtune: Doxygen not found; the docs target (API reference) is not defined")
  return()
endif()
set(CHILDTUNE_DOCS_OUTPUT "${PROJECT_BINARY_DIR}/docs/api")
configure_file("${PROJECT_SOURCE_DIR}/docs/Doxyfile.in" "${PROJECT_BINARY_DIR}/docs/Doxyfile" @ONLY)
# Always runs (a few seconds): a stamp would hide a failed run's warnings on the
# next build.
add_custom_target(docs
  COMMAND "${CMAKE_COMMAND}" -E make_directory "${CHILDTUNE_DOCS_OUTPUT}"
  COMMAND Doxygen::doxygen "${PROJECT_BINARY_DIR}/docs/Doxyfile"
  WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
  COMMENT "Doxygen: the API reference in ${CHILDTUNE_DOCS_OUTPUT}/html (warnings are errors)"
  VERBATIM)
