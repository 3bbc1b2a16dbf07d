#pragma once
//! \file
//! The Thrust adapter: Child-Tuning steps on the memory of any Thrust system
//! (CUDA, OpenMP, TBB, CPP). `#include <childtune/thrust.hpp>`, link
//! `childtune::thrust`.

#include <childtune/thrust/step.hpp>
