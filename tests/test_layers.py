"""The package's folders are its layers: a module imports only its own wing and the wings below.

From the bottom: the ground floor (the top-level modules such as config, model, errors),
devices, data, training, serving, checks, the Python API (`api.py`), tools and the CLI. Lazy
imports inside functions count too: an upward import is a cycle waiting to happen.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_jax"
LAYERS = ["", "devices", "data", "training", "serving", "checks", "api", "tools", "cli"]
EXEMPT = {"__init__", "__main__"}  # the package root re-exports the public API


def layer_of(module: str) -> int:
    """The rank of a dotted module name under mnist_jax ("training.step" -> 3)."""
    head = module.split(".")[0]
    return LAYERS.index(head) if head in LAYERS else 0


def imported_modules(path: Path) -> set[str]:
    """Every mnist_jax module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mnist_jax":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("mnist_jax."):
                found.add(node.module.removeprefix("mnist_jax."))
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("mnist_jax.")
                for a in node.names
                if a.name.startswith("mnist_jax.")
            }
    return found


def package_modules() -> dict[str, Path]:
    """Dotted name under mnist_jax -> file, for every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = package_modules()


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in EXEMPT))
def test_a_module_imports_nothing_from_a_wing_above_its_own(name):
    rank = layer_of(name)
    above = {m for m in imported_modules(MODULES[name]) if layer_of(m) > rank}
    assert not above, f"mnist_jax.{name} ({LAYERS[rank] or 'ground floor'}) imports {above}"


def test_the_top_level_holds_few_modules_and_the_rest_live_in_the_wings():
    top = [n for n in MODULES if "." not in n and n not in LAYERS]
    assert len(top) <= 12, sorted(top)
    wings = {n.split(".")[0] for n in MODULES if "." in n}
    assert len(wings) >= 4, wings
