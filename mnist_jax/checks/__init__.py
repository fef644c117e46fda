"""What a trained model does and whether the maths is right: evaluation and its report, plots,
the hand-written NumPy reference and the gradient check against it."""
