"""`python -m mnist_jax` runs the command-line interface."""

from mnist_jax.cli import main

raise SystemExit(main())
