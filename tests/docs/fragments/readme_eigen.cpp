// Harness of README.md's Eigen fragment (its #include goes first): runs it with
// gradients filled where the fragment says "compute dw1, db1".
int main() {
// FRAGMENT
    return opt.step_count() == 1 ? 0 : 1;
}
