"""The one way mnist-jax talks to a person: messages on stderr, results on stdout.

Progress, data notes and warnings go through `note` (stderr, flushed), so that a command's
stdout carries only its result: text for a person, or exactly one JSON document with `--json`.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def note(line: str) -> None:
    """Print a message line on stderr."""
    print(line, file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    """Print `value` as one indented JSON document on stdout."""
    print(json.dumps(value, indent=2), flush=True)
