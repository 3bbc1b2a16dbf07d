#pragma once
//! \file
//! Before 0.2 a rule's state-buffer counts were read here; they are among a
//! rule's optional members in update/rule_traits.hpp now.
#pragma message("childtune/update/state_buffers.hpp is deprecated: include <childtune/update/rule_traits.hpp>")
#include <childtune/update/rule_traits.hpp>
