"""Tools built on training: the benchmark and its peers, the time-to-accuracy race, the
vmapped sweep and the activation comparison."""
