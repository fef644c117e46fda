"""Training, the run itself: `trainer.build(config, splits, placement)` assembles a run (the one
place), `step` holds its jitted maths, `loop` runs epochs, with the optimiser, the divergence
rule, the distortions and the memory plan around them. What a run writes lives in
`mnist_jax.records`; the model in other formats in `mnist_jax.interchange`."""
