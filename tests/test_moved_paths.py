"""The modules that moved out of `mnist_jax.training` keep their old paths for one release.

Each old path, imported any of the three ways a user writes it, gives the moved module itself
(the same object, so patching one patches the other) and a DeprecationWarning that names the new
path, at the user's own line; names that never existed there still fail; and the package itself
imports no old path (tests/test_layers.py checks the source, lazy imports included; here every
module is imported with the warning as an error).
"""

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import mnist_jax.training as training
from tests.conftest import ROOT
from tests.test_layers import MODULES

FORMS = {
    "import": "import mnist_jax.training.{old} as found",
    "from package": "from mnist_jax.training import {old} as found",
    "from module": "from mnist_jax.training.{old} import {name}",
}


def defined_in(module) -> str:
    """The name of something `module` defines itself (a function or class)."""
    return next(
        n for n, v in vars(module).items() if getattr(v, "__module__", "") == module.__name__
    )


@pytest.fixture
def unimported(monkeypatch):
    """Forget the old paths imported so far, so that importing one warns again."""
    for old in training.MOVED:
        monkeypatch.delitem(sys.modules, f"mnist_jax.training.{old}", raising=False)
        monkeypatch.delitem(vars(training), old, raising=False)  # hasattr would import it


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("old", sorted(training.MOVED))
def test_an_old_path_gives_the_moved_module_with_a_warning(old, form, unimported):
    new = importlib.import_module(training.MOVED[old])
    name = defined_in(new)
    scope: dict = {}
    with pytest.deprecated_call(match=rf"mnist_jax\.training\.{old} has moved to {new.__name__};"):
        exec(FORMS[form].format(old=old, name=name), scope)
    if form == "from module":
        assert scope[name] is getattr(new, name)
    else:
        assert scope["found"] is new
    assert sys.modules[f"mnist_jax.training.{old}"] is new


def test_the_warning_points_at_the_importing_line(unimported):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import mnist_jax.training.checkpoint  # noqa: F401
    [warning] = [w for w in caught if w.category is DeprecationWarning]
    assert warning.filename == __file__
    line = Path(__file__).read_text().splitlines()[warning.lineno - 1]
    assert "import mnist_jax.training.checkpoint" in line


def test_a_name_that_never_was_there_still_fails():
    with pytest.raises(ImportError):
        from mnist_jax.training import nothing_here  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mnist_jax.training.nothing_here")
    assert not hasattr(training, "nothing_here")


def test_the_moved_modules_no_longer_live_in_training():
    for old in training.MOVED:
        assert f"training.{old}" not in MODULES, old


def test_importing_every_module_of_the_package_warns_about_no_old_path():
    names = sorted(f"mnist_jax.{name}" for name in MODULES if name not in ("__init__", "__main__"))
    code = (
        "import importlib, warnings\n"
        # an old path imported by a module of the package warns at that module's line
        "warnings.filterwarnings('error', category=DeprecationWarning, module='mnist_jax')\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
