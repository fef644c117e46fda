"""`python -m mnist_jax` runs the command-line interface."""

from mnist_jax.cli.app import main

raise SystemExit(main())
