"""Training, the run itself: `trainer.build(config, splits, placement)` assembles a run (the one
place), `step` holds its jitted maths, `loop` runs epochs, with the optimiser, the divergence
rule, the distortions and the memory plan around them. What a run writes lives in
`mnist_jax.records`; the model in other formats in `mnist_jax.interchange`.

The modules that moved out keep their old paths for one release: `import
mnist_jax.training.checkpoint` (or `from mnist_jax.training import theta`, ...) gives the module
at its new path, the same object, with a DeprecationWarning naming that path (the changelog in
docs/changelog.md lists the moves). The package itself never imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# Old name under mnist_jax.training -> where the module lives now.
MOVED = {
    "checkpoint": "mnist_jax.records.checkpoint",
    "rundir": "mnist_jax.records.rundir",
    "tracking": "mnist_jax.records.tracking",
    "events": "mnist_jax.records.tensorboard",
    "interchange": "mnist_jax.interchange",
    "theta": "mnist_jax.interchange.theta",
    "onnxfile": "mnist_jax.interchange.onnxfile",
    "safetensorsfile": "mnist_jax.interchange.safetensorsfile",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import `mnist_jax.training.<old name>` as the moved module itself, with a warning.

    Only the names in `MOVED` are found here, after every file on the path was looked for;
    once imported, the old name is an alias in `sys.modules`, as any imported module is.
    """

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a plain module, swapped for the moved one by exec_module

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__.rpartition(".")[2]]
        _warn(f"{module.__name__} has moved to {new}; import it from there (the old path goes "
              "in the next release)")  # fmt: skip
        # The import system hands out what sys.modules holds once this returns.
        sys.modules[module.__name__] = importlib.import_module(new)


def _warn(message: str) -> None:
    """Warn at the line that imported the old path, outside the import system and this file."""
    frame = sys._getframe(1)
    while frame.f_back and (
        frame.f_code.co_filename == __file__ or "importlib" in frame.f_code.co_filename
    ):
        frame = frame.f_back
    warnings.warn_explicit(
        message,
        DeprecationWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__", "<unknown>"),
        registry=frame.f_globals.setdefault("__warningregistry__", {}),
        module_globals=frame.f_globals,
    )


def __getattr__(name: str) -> ModuleType:
    """Give `mnist_jax.training.<old name>` as an attribute (`from mnist_jax.training import`)."""
    if name in MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not any(type(finder).__name__ == MovedModules.__name__ for finder in sys.meta_path):
    sys.meta_path.append(MovedModules())
