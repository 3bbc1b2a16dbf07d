# childtune_add_adapter(<name>): the header-only INTERFACE target childtune::<name>
# of an adapter directory (headers under its include/, on top of the core), exported
# as <name> for find_package(childtune COMPONENTS <name>). Call it from the
# adapter's own CMakeLists.txt; the adapter adds its dependencies itself.
function(childtune_add_adapter name)
  add_library(childtune_${name} INTERFACE)
  add_library(childtune::${name} ALIAS childtune_${name})
  set_target_properties(childtune_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(childtune_${name} INTERFACE
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(childtune_${name} INTERFACE childtune::childtune)
endfunction()
