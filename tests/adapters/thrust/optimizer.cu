// The optimizer test of the Thrust adapter, compiled by nvcc for the CUDA system.
#include "optimizer.cpp"
