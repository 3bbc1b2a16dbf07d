# Harness of the numpy reader in docs/guides/mask-files.md: puts the committed
# golden mask file (tests/data/masks/golden_v1.ctmask, which tests/mask/mask_set.cpp
# proves equal to what mask_set::save writes) where the block reads it, runs the
# block, and checks what it read against the set the C++ test writes.
import os
import shutil

shutil.copy(os.path.join(os.environ["CHILDTUNE_SOURCE_DIR"], "tests", "data", "masks", "golden_v1.ctmask"),
            "golden_v1.ctmask")

# FRAGMENT

import numpy as np

assert list(masks) == ["encoder.layer.0.weight", "head.bias", "empty"], list(masks)
w = masks["encoder.layer.0.weight"]
assert w.dtype == np.bool_ and w.shape == (70,)
assert np.array_equal(np.flatnonzero(w), np.arange(0, 70, 3))
assert np.array_equal(np.flatnonzero(masks["head.bias"]), [1, 4])
assert masks["empty"].shape == (0,)

# A damaged byte is caught by the checksum.
data = bytearray(open("golden_v1.ctmask", "rb").read())
data[60] ^= 1
open("damaged.ctmask", "wb").write(bytes(data))
try:
    read_mask_file("damaged.ctmask")
except ValueError as e:
    assert "checksum" in str(e)
else:
    raise AssertionError("a damaged file was read")
print("mask_file_numpy: ok")
