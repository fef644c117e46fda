"""Derive the bundled sample (mnist_jax/sample/) from the full MNIST files.

    python scripts/make_sample.py ../shared/data/mnist

The sample is a fixed, class-stratified subset: 10,000 training and 2,000 test images, each
class keeping its share of the full split. The gzip streams are written with mtime 0, so the
output is byte-for-byte reproducible; tests/test_data.py re-derives it whenever the full files
are present and checks the shipped arrays against it.
"""

import gzip
import sys
from pathlib import Path

from mnist_jax import files
from mnist_jax.data import idx, mnist


def main(folder: str) -> None:
    full = mnist.read_folder(Path(folder), "mnist", mnist.MNIST_SHA256)
    sample = mnist.derive_sample(full)
    arrays = {
        "train-images-idx3-ubyte": sample.train_images,
        "train-labels-idx1-ubyte": sample.train_labels,
        "t10k-images-idx3-ubyte": sample.test_images,
        "t10k-labels-idx1-ubyte": sample.test_labels,
    }
    mnist.SAMPLE_DIR.mkdir(exist_ok=True)
    for name, array in arrays.items():
        packed = gzip.compress(idx.encode_idx(array), compresslevel=9, mtime=0)
        files.atomic_write_bytes(mnist.SAMPLE_DIR / f"{name}.gz", packed)
        print(f"{name}.gz  {array.shape}  {len(packed):,} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist")
