"""mnist-jax as a package: bundled configs by name, the `configs` listing, declared imports and
what a built wheel holds."""

import ast
import email
import importlib.metadata
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_jax import config as config_module
from mnist_jax.cli.app import app
from mnist_jax.config import bundled_configs, load_config, read_toml
from mnist_jax.errors import ConfigError
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Work from an empty folder, away from the checkout's configs/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_bundled_name_loads_the_same_config_as_its_file(path, elsewhere):
    assert load_config(path.stem) == load_config(path)
    assert load_config(path.stem, {"epochs": 3}).epochs == 3  # flags still win


def test_a_path_that_exists_wins_over_a_bundled_name(elsewhere):
    (elsewhere / "smoke").write_text('name = "mine"\nhidden = [5]\n')
    config = load_config("smoke")
    assert (config.name, config.hidden) == ("mine", (5,))


@pytest.mark.parametrize("value", ["no-such-config", "sub/smoke", "smoke.toml"])
def test_neither_file_nor_name_is_one_error_line_listing_the_bundled_names(value, elsewhere):
    with pytest.raises(ConfigError, match="config file not found") as caught:
        load_config(value)
    message = str(caught.value)
    assert "\n" not in message
    assert all(path.stem in message for path in CONFIGS)
    # A path whose file name is a bundled config's says how to take the bundled one.
    assert ("--config smoke" in message) == (Path(value).stem == "smoke")


def test_bundled_configs_reads_names_and_first_comment_lines(tmp_path, monkeypatch):
    (tmp_path / "b.toml").write_text("# Second one.\n# More detail.\nepochs = 2\n")
    (tmp_path / "a.toml").write_text('name = "a"\n#not a header, but the first comment\n')
    (tmp_path / "c.toml").write_text("epochs = 1\n")
    (tmp_path / "notes.txt").write_text("# not a config\n")
    monkeypatch.setattr(config_module, "bundled_configs_dir", lambda: tmp_path)
    found = bundled_configs()
    assert list(found) == ["a", "b", "c"]
    assert found == {"a": "not a header, but the first comment", "b": "Second one.", "c": ""}


def test_the_configs_command_lists_every_bundled_config_on_one_line(elsewhere):
    result = CliRunner().invoke(app, ["configs"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [path.stem for path in CONFIGS]
    for line, path in zip(lines, CONFIGS):
        first_comment = next(t for t in path.read_text().splitlines() if t.startswith("#"))
        assert line.endswith(first_comment.lstrip("# "))
    # the descriptions start in one column
    assert len({line.index(line.split()[1]) for line in lines}) == 1


@pytest.mark.long
def test_train_takes_a_bundled_name_from_any_folder(elsewhere):
    result = CliRunner().invoke(
        app, ["train", "-c", "seed-lbfgs-100", "--dry-run", "--dataset", "sample"]
    )
    assert result.exit_code == 0, result.output
    assert "seed-lbfgs-100" in result.stdout
    assert read_toml(ROOT / "configs" / "seed-lbfgs-100.toml")["optimizer"] in result.stdout


def _distribution(requirement: str) -> str:
    """Return the normalised distribution name of a PEP 508 requirement string."""
    return _normalise(re.match(r"[A-Za-z0-9._-]+", requirement)[0])


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports() -> tuple[set[str], set[str]]:
    """Return the package's third-party top-level modules: (imported at load time, all)."""
    eager, every = set(), set()
    for path in (ROOT / "mnist_jax").rglob("*.py"):  # every wing
        tree = ast.parse(path.read_text())
        lazy = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "mnist_jax":
                    continue
                every.add(top)
                if id(node) not in lazy:
                    eager.add(top)
    return eager, every


def test_every_imported_module_is_declared():
    modules_to_dists = importlib.metadata.packages_distributions()

    def dists(modules: set[str]) -> set[str]:
        return {_normalise(modules_to_dists.get(m, [m])[0]) for m in modules}

    required = {_distribution(r) for r in PYPROJECT["dependencies"]}
    extras = {
        _distribution(r) for group in PYPROJECT["optional-dependencies"].values() for r in group
    }
    eager, every = _third_party_imports()
    assert {"jax", "numpy", "typer", "rich"} <= every  # the scan sees the imports at all
    assert dists(eager) <= required, "imported when the package loads, so must be required"
    assert dists(every) <= required | extras


@pytest.fixture(scope="module")
def wheel(built_wheel) -> zipfile.ZipFile:
    """The wheel `make wheel` builds from a clean copy of the checkout."""
    with zipfile.ZipFile(built_wheel) as archive:
        yield archive


@pytest.mark.long
def test_the_wheel_holds_the_code_configs_sample_and_page(wheel):
    names = set(wheel.namelist())
    expected = [f"mnist_jax/configs/{path.name}" for path in CONFIGS]
    package = ROOT / "mnist_jax"  # every module, in every folder (pyproject lists the folders)
    expected += [f"mnist_jax/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")]
    for folder in ("sample", "static"):
        expected += [
            f"mnist_jax/{folder}/{p.name}" for p in (ROOT / "mnist_jax" / folder).iterdir()
        ]
    assert len(expected) > len(CONFIGS) + 4 + 1
    assert sorted(set(expected) - names) == []
    assert not any(name.startswith(("tests/", "configs/", "scripts/")) for name in names)


@pytest.mark.long
def test_the_wheel_metadata_names_the_license_and_dependencies(wheel):
    (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(wheel.read(metadata_name))
    assert metadata["License-Expression"] == "MIT"
    license_name = metadata_name.replace("METADATA", "licenses/LICENSE")
    assert wheel.read(license_name) == (ROOT / "LICENSE").read_bytes()
    requires = metadata.get_all("Requires-Dist")
    assert {_distribution(r) for r in PYPROJECT["dependencies"]} <= {
        _distribution(r) for r in requires
    }
    assert metadata["Requires-Python"] == PYPROJECT["requires-python"]


def test_ci_installs_on_the_oldest_python_that_pyproject_allows():
    oldest = re.fullmatch(r">=(\d+\.\d+)", PYPROJECT["requires-python"])[1]
    script = (ROOT / "scripts" / "check_install.sh").read_text()
    assert f"OLDEST_PYTHON:-$pyenv_root/versions/{oldest}." in script
    assert "scripts/check_install.sh" in (ROOT / ".ci" / "run").read_text()
