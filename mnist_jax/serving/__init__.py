"""Predictions for images from outside: inference from a checkpoint, `predict` on files, and
the drawing page's HTTP server."""
