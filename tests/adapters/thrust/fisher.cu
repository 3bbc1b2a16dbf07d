// The fisher test of the Thrust adapter, compiled by nvcc for the CUDA system.
#include "fisher.cpp"
