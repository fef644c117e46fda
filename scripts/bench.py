"""Run the side-by-side benchmark; the same as `mnist-jax bench` (see its --help).

MNIST_JAX_DATA=/path/to/mnist python scripts/bench.py --repeats 5 --write-json bench.json
"""

import sys

from mnist_jax.cli.app import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
