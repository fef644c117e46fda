"""The package's folders are its layers: a module imports only its own wing and the wings below.

From the bottom: the ground floor (the top-level modules such as config, model, architecture,
errors), devices, data, training (the run itself), records (the run folder, checkpoints,
tracking), interchange (the model in other formats), serving, checks, the Python API (`api.py`),
tools and the CLI. Lazy imports inside functions count too: an upward import is a cycle waiting
to happen. Imports under `if TYPE_CHECKING:` do not run, so they are not imports here.

The house keeps its shape: no module over 450 lines, no import cycle between modules (lazy
imports included), no folder of more than 10 modules, and the run folder's records and the
model's other formats outside training/, the model's sizes beside the model.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_jax"
LAYERS = [
    "", "devices", "data", "training", "records", "interchange", "serving", "checks", "api",
    "tools", "cli",
]  # fmt: skip
EXEMPT = {"__init__", "__main__"}  # the package root re-exports the public API
MAX_LINES = 450
MAX_MODULES = 10  # per folder, its __init__.py included


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


def layer_of(module: str) -> int:
    """The rank of a dotted module name under mnist_jax ("training.step" -> 3)."""
    head = module.split(".")[0]
    return LAYERS.index(head) if head in LAYERS else 0


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, in functions too, but not under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child.test):
            for branch in child.orelse:
                yield from import_nodes(ast.Module(body=[branch], type_ignores=[]))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from import_nodes(child)


def package_of(name: str, path: Path) -> str:
    """The package under mnist_jax ("" for the root) that a module's relative imports start in."""
    if name == "__init__":
        return ""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_names(name: str) -> set[str]:
    """What module `name` imports from mnist_jax, as written: "records.checkpoint" for
    `from mnist_jax.records import checkpoint`, "data.Splits" for `from mnist_jax.data import
    Splits` (a name, not a module: `resolve` tells them apart)."""
    path, found = MODULES[name], set()
    for node in import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mnist_jax"}
            continue
        if node.level:  # relative: from the module's own package, up level - 1
            base = package_of(name, path).split(".") if package_of(name, path) else []
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(["mnist_jax", *base, *([node.module] if node.module else [])])
        else:
            module = node.module or ""
        if module.split(".")[0] == "mnist_jax":
            found |= {f"{module}.{a.name}" for a in node.names}
    return {n.removeprefix("mnist_jax").removeprefix(".") for n in found}


def resolve(imported: str) -> str:
    """The module an imported dotted name lives in: itself if a module, else the longest
    module prefix ("data.Splits" -> "data", "Config" of the root -> "__init__")."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return "__init__"


def imported_modules(name: str) -> set[str]:
    """Every mnist_jax module `name` imports, at the top or inside a function."""
    return {resolve(n) for n in imported_names(name)} - {name}


GRAPH = {name: imported_modules(name) for name in MODULES}


# --- layers


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in EXEMPT))
def test_a_module_imports_nothing_from_a_wing_above_its_own(name):
    rank = layer_of(name)
    above = {m for m in GRAPH[name] if layer_of(m) > rank}
    assert not above, f"mnist_jax.{name} ({LAYERS[rank] or 'ground floor'}) imports {above}"


def test_the_top_level_holds_few_modules_and_the_rest_live_in_the_wings():
    top = [n for n in MODULES if "." not in n and n not in LAYERS]
    assert len(top) <= 12, sorted(top)
    wings = {n.split(".")[0] for n in MODULES if "." in n}
    assert len(wings) >= 4, wings


def test_every_folder_of_the_package_is_a_layer():
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.glob("*/*.py")}
    assert folders <= set(LAYERS), folders - set(LAYERS)


# --- the house's shape


def test_no_module_is_over_450_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert not {n: lines for n, lines in long.items() if lines > MAX_LINES}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` as [a, b, ..., a], or [] when it has none."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return []


def test_no_import_cycle_lazy_imports_included():
    # The import of a submodule first runs its package's __init__.py; that implicit step is
    # not an edge here (a package may re-export its modules' names), only what a file imports.
    cycle = find_cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(f"mnist_jax.{n}" for n in cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_folder_holds_more_than_10_modules():
    folders: dict[Path, int] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.parent != PACKAGE:
            folders[path.parent] = folders.get(path.parent, 0) + 1
    crowded = {str(f.relative_to(PACKAGE)): n for f, n in folders.items() if n > MAX_MODULES}
    assert not crowded, f"more than {MAX_MODULES} modules (split the folder by idea): {crowded}"


RECORDS = {"rundir", "checkpoint", "tracking", "tensorboard"}
FORMATS = {"theta", "onnxfile", "safetensorsfile"}
MODEL_FACTS = {"layer_sizes", "num_params", "optimizer_buffers", "MNIST_INPUT", "MNIST_CLASSES"}


def test_the_records_and_the_formats_live_outside_training():
    assert {f"records.{n}" for n in RECORDS} <= set(MODULES)
    assert {f"interchange.{n}" for n in FORMATS} | {"interchange"} <= set(MODULES)
    in_training = {n.split(".")[1] for n in MODULES if n.startswith("training.")}
    assert not in_training & (RECORDS | FORMATS | {"interchange", "events"})


def defined_at_top(tree: ast.Module) -> set[str]:
    """The names a module defines at its top level: functions, classes, assigned names."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_model_sizes_live_beside_the_model_and_are_asked_of_it(name):
    tree = ast.parse(MODULES[name].read_text())
    if name != "architecture":
        assert not defined_at_top(tree) & MODEL_FACTS, f"mnist_jax.{name} defines model sizes"
    elsewhere = {
        n for n in imported_names(name)
        if n.rpartition(".")[2] in MODEL_FACTS and n.rpartition(".")[0] != "architecture"
    } | {
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in MODEL_FACTS
        and isinstance(node.value, ast.Name) and node.value.id != "architecture"
    }  # fmt: skip
    assert not elsewhere, f"mnist_jax.{name} asks {elsewhere}; ask mnist_jax.architecture"


def test_the_package_imports_no_path_it_moved():
    from mnist_jax.training import MOVED

    old = {f"training.{n}" for n in MOVED}
    for name in MODULES:
        assert not imported_names(name) & old, f"mnist_jax.{name} imports a moved path"
