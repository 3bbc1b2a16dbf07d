# Fails when the object file OBJECT defines what CHILDTUNE_EXTERN_OPTIMIZER
# declared extern (the optimizer's members, the registry, the step kernels):
# the declaration would then save no compile time. NM: the toolchain's nm.
execute_process(COMMAND ${NM} -C --defined-only ${OBJECT} OUTPUT_VARIABLE defined RESULT_VARIABLE failed)
if(failed)
  message(FATAL_ERROR "${NM} could not read ${OBJECT}")
endif()
# One entry per line: "<address> <kind> <symbol>"; a symbol that merely names
# one of these (a lambda of an inlined member) is not a definition of it.
string(REPLACE "\n" ";" lines "${defined}")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^[0-9a-f]+ [A-Za-z] " "" symbol "${line}")
  foreach(prefix IN ITEMS "childtune::detail::cpu_kernel_table<childtune::adamw> const& childtune::detail::cpu_kernels<"
                          "childtune::detail::registry<childtune::adamw>::add_group("
                          "childtune::optimizer<childtune::adamw>::save("
                          "childtune::basic_optimizer<childtune::adamw, childtune::detail::cpu_executor<childtune::adamw> >::reserve_state(")
    string(FIND "${symbol}" "${prefix}" at)
    if(at EQUAL 0)
      message(FATAL_ERROR "the unit declaring childtune::optimizer<adamw> extern defines ${symbol}")
    endif()
  endforeach()
endforeach()
# The check must be able to fail: the definitions' unit defines them.
execute_process(COMMAND ${NM} -C --defined-only ${DEFINITIONS} OUTPUT_VARIABLE defined)
string(FIND "${defined}" "childtune::detail::registry<childtune::adamw>::add_group(" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the definitions' unit does not define registry<adamw>::add_group: the symbol names changed, update this check")
endif()
message(STATUS "the extern unit defines none of the optimizer's templates")
