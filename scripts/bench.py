"""Run the side-by-side benchmark; the same as `mnist-jax bench` (see its --help).

MNIST_JAX_DATA=/path/to/mnist python scripts/bench.py --json bench.json
"""

from mnist_jax.cli import app

if __name__ == "__main__":
    app(["bench", *__import__("sys").argv[1:]])
