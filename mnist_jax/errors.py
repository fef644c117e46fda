"""The project's own error type: bad input a person can fix, reported as one line.

Anything raised as `MnistJaxError` (or a subclass) is shown by the CLI as a single line on
stderr with exit code 2 (or the error's own `exit_code`, 130 for `Interrupted`). Every
other exception is a bug and keeps its traceback.
"""


class MnistJaxError(Exception):
    """Bad input or an unusable environment, described in one actionable line."""


class DataError(MnistJaxError):
    """A data file is missing, malformed or fails its checksum."""


class ConfigError(MnistJaxError):
    """A config file or flag has an unknown key, a wrong type or an invalid value."""


class CheckpointError(MnistJaxError):
    """A checkpoint is missing, damaged, or does not fit the requested model."""


class Interrupted(MnistJaxError):
    """Training was stopped on request (Ctrl-C); the last completed epoch is saved."""

    exit_code = 130  # the shell's convention for a process ended by SIGINT
