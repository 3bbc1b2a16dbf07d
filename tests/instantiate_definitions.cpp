// The unit that compiles what tests/instantiate.cpp declares extern.
#include <childtune/childtune.hpp>
#include <childtune/instantiate.hpp>

CHILDTUNE_INSTANTIATE_OPTIMIZER(childtune::adamw)
