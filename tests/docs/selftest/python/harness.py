# Harness of tests/docs/selftest/check_python.cmake (not documentation): checks
# the environment a python block runs in, around the block.
import os
import sys

assert os.listdir(".") == [], "a block runs in an empty working directory"
assert os.path.isfile(os.path.join(os.environ["CHILDTUNE_SOURCE_DIR"], "tests", "docs", "README.md"))
assert sys.stdin.read() == "", "a block gets no input"


def helper(xs):
    return sum(xs)


# FRAGMENT
assert value == 7
with open("written.txt", "w") as f:
    f.write("a block may write files")
