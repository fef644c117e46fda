"""Training: `trainer.build(config, splits, placement)` assembles a run (the one place), `step`
holds its jitted maths, `loop` runs epochs, with the optimiser, the divergence rule, the run
folder, pickle-free checkpoints, the Theta files and the memory plan around them."""
