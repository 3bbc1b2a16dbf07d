// Must not compile: tensors hold parameter elements (float, double, bfloat16, float16).
#include <childtune/tensor_view.hpp>

int main() {
    int data[4] = {};
    childtune::tensor_view<int> v(data, 4);
    (void)v;
}
