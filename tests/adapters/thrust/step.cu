// The step test of the Thrust adapter, compiled by nvcc for the CUDA system.
#include "step.cpp"
