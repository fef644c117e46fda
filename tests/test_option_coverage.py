"""Every option of every command has a test that sets it through the command line.

The options come from the typer app itself (every command of every group, every option's long
flag); the tests that set them are found by their `@pytest.mark.option(COMMAND, FLAG)` markers,
read from the test files' source, so that the check holds whichever tests a run selects. The
root's own options (--version, ...) go by the command "mnist-jax".
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import typer

from mnist_jax.cli.app import app

TESTS = Path(__file__).resolve().parent
ROOT_COMMAND = "mnist-jax"


def long_flag(param) -> str:
    """An option's long name (`--max-connections` for `-n/--max-connections`)."""
    return max(param.opts, key=len)


def app_options() -> set[tuple[str, str]]:
    """(command path as typed, long flag) for every option of every command of the app."""
    found: set[tuple[str, str]] = set()

    def walk(command, path: tuple[str, ...]) -> None:
        for param in command.params:
            if param.param_type_name == "option":
                found.add((" ".join(path) or ROOT_COMMAND, long_flag(param)))
        for name, sub in getattr(command, "commands", {}).items():  # a group's commands
            if not sub.hidden:
                walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def is_option_marker(node: ast.AST) -> bool:
    """Whether `node` is `pytest.mark.option` or `mark.option` (as called or decorated)."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "option"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    ) or (isinstance(node, ast.Name) and node.id == "option")


def markers_in(path: Path) -> Iterator[tuple[str, str, int]]:
    """(command, flag, line) of each `option(COMMAND, FLAG)` marker call in a test file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and is_option_marker(node.func):
            args = node.args
            assert len(args) == 2 and all(
                isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args
            ), f"{path.name}:{node.lineno}: option markers take two literal strings"
            yield args[0].value, args[1].value, node.lineno


def marked_options() -> dict[tuple[str, str], list[str]]:
    """Each marked (command, flag) and where its markers are (file:line)."""
    marked: dict[tuple[str, str], list[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for command, flag, line in markers_in(path):
            marked.setdefault((command, flag), []).append(f"{path.name}:{line}")
    return marked


def test_every_option_of_every_command_has_a_test():
    missing = sorted(app_options() - marked_options().keys())
    assert not missing, "options no test sets through the CLI (mark it with " + (
        "@pytest.mark.option(COMMAND, FLAG)):\n"
        + "\n".join(f"  {command} {flag}" for command, flag in missing)
    )


def test_every_option_marker_names_a_real_option():
    stale = {k: v for k, v in marked_options().items() if k not in app_options()}
    assert not stale, "markers naming no option of the app:\n" + "\n".join(
        f"  {command} {flag} at {', '.join(where)}"
        for (command, flag), where in sorted(stale.items())
    )


def test_the_walk_finds_nested_commands_and_the_markers_found_are_real():
    options = app_options()
    # A sub-command's, the root's and a flag with a short form are all there.
    assert {
        ("data export", "--rows"),
        ("mnist-jax", "--version"),
        ("launch", "--processes"),
    } <= options
    assert ("eval", "--split") in marked_options()
    assert ("data", "--rows") not in options  # a group itself takes no option here


def test_the_scan_reads_decorators_and_parametrized_marks(tmp_path):
    source = """
import pytest
option = pytest.mark.option

@pytest.mark.option("eval", "--split")
def test_a(): ...

@pytest.mark.parametrize("x", [pytest.param(1, marks=option("train", "--lr"))])
def test_b(x): ...
"""
    path = tmp_path / "test_example.py"
    path.write_text(source)
    assert [m[:2] for m in markers_in(path)] == [("eval", "--split"), ("train", "--lr")]
