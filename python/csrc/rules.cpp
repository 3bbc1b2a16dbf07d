// childtune._C's bindings of the SGD, Lion and LAMB rules (bindings.hpp), in
// a unit of their own so that the extension builds on two cores in parallel.
#include "bindings.hpp"

#include <childtune/update/lamb.hpp>
#include <childtune/update/lion.hpp>
#include <childtune/update/sgd.hpp>

namespace childtune_py {
//! Registers SGDCore, LionCore and LAMBCore in the module (called by module.cpp).
void bind_more_rules(py::module_& m) {
    bind_optimizer<ct::sgd>(m, "SGDCore");
    bind_optimizer<ct::lion>(m, "LionCore");
    bind_optimizer<ct::lamb>(m, "LAMBCore");
}
} // namespace childtune_py
