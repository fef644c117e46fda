"""Shared fixtures: a fixed key, an isolated user cache, the full MNIST files if present, and a
wheel built once per session."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.toml"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a GPU; skipped where JAX sees none")


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked gpu on a machine where JAX finds no GPU."""
    if any(d.platform == "gpu" for d in jax.devices()):
        return
    skip = pytest.mark.skip(reason="needs a GPU: JAX sees none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def session_folder(tmp_path_factory) -> Path:
    """The session's temporary folder, the same for every pytest-xdist worker."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Keep tests away from the real user cache; share one compilation cache per session.

    The user cache is each worker's own (tests look at what lands there); the compiled programs
    are shared by the workers, so a program compiled by one is loaded by the other.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    compiled = session_folder(tmp_path_factory) / "jax-cache"
    monkeypatch.setenv("MNIST_JAX_COMPILE_CACHE", str(compiled))


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture(scope="session")
def full_mnist() -> Path:
    """The folder of the full MNIST files (MNIST_JAX_DATA), or skip: they are not shipped."""
    folder = os.environ.get("MNIST_JAX_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("full MNIST not available: set MNIST_JAX_DATA to the folder of the IDX files")
    return Path(folder)


def built(config, init_key=None):
    """Build a run through the one builder, as `mnist-jax train` does; return (trainer, state).

    `init_key` replaces the config's init key. Call inside `trainer.precision(config)` for
    float64 configs.
    """
    from mnist_jax import data
    from mnist_jax.training import trainer

    run = trainer.build(config, data.load(config, log=lambda _: None))
    return run, run.init_state(init_key)


def run_offline(args: list[str], home: Path, timeout: float = 600):
    """Run `python ARGS` from the checkout as a new user would: no network, an empty user cache.

    Nothing is found or downloaded, so the data is the bundled sample. Returns the
    CompletedProcess (text output captured).
    """
    import subprocess
    import sys

    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),  # an empty user cache: nothing downloaded, nothing found
        "XDG_CACHE_HOME": str(home / "cache"),
        "MNIST_JAX_COMPILE_CACHE": "off",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_cli(args: list[str]) -> SimpleNamespace:
    """Run the real `mnist-jax` entry point (`cli.main`) in-process, as the console script does.

    Returns exit_code, stdout, stderr and output (both). Unlike typer's CliRunner, usage
    errors (an unknown choice, a bad number) go through the entry point's one-line handling.
    """
    import contextlib
    import io

    from mnist_jax.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    stdout, stderr = out.getvalue(), err.getvalue()
    return SimpleNamespace(exit_code=code, stdout=stdout, stderr=stderr, output=stdout + stderr)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel `make wheel` builds from a clean copy of this checkout, its uncommitted changes
    included, the way `pip install .` builds one: dist/mnist_jax-VERSION-py3-none-any.whl."""
    source = tmp_path_factory.mktemp("wheel") / "src"
    patterns = shutil.ignore_patterns(".*", "build", "dist", "runs", "*.egg-info", "__pycache__")

    def skip(folder: str, names: list[str]) -> set[str]:
        # the top-level data/ holds exported data files; mnist_jax/data/ is code
        top = {"data", "site"} & set(names) if Path(folder) == ROOT else set()
        return set(patterns(folder, names)) | top

    shutil.copytree(ROOT, source, ignore=skip)
    make = ["make", "-C", str(source), "wheel", f"VENV={sys.prefix}"]
    done = subprocess.run(make, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = (source / "dist").glob("mnist_jax-*.whl")
    return path
