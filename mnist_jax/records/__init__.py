"""The run folder and its records: `rundir` (the folder a run writes and resumes from),
pickle-free checkpoints, and run tracking, which hands each record to every writer
(metrics.jsonl, summary.json, TensorBoard's event files)."""
