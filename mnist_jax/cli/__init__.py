"""The `mnist-jax` command line: typer apps whose commands each make one library call.

`app` holds the training and evaluation commands, `tools` the others (bench, sweep, launch,
configs, data, theta), `options` the options they share, declared once; `run` is what `train`
does around the trainer. No module here imports JAX at the top.
"""
