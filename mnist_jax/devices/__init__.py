"""Where the code runs: per-backend choices, device placement and the compile cache, joining a
`jax.distributed` job, sharded arrays, and the local launcher."""
