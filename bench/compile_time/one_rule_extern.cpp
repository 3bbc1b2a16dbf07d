// Compile-time probe: the unit of one_rule.cpp, in a program that compiles the
// optimizer once in another unit (childtune/instantiate.hpp): the same code
// after the extern declarations.
#include <childtune/childtune.hpp>
#include <childtune/instantiate.hpp>

CHILDTUNE_EXTERN_OPTIMIZER(childtune::adamw)

#include "one_rule.cpp"
