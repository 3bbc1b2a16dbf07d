// Harness of docs/compile-time.md's "one unit" block: the block is the whole
// unit (it compiles the optimizer that the other units declare extern).
// FRAGMENT
