"""The README's promises, executed: its Python API block runs, its command list is `--help`."""

import re

import pytest

from tests.conftest import ROOT, run_cli, run_offline

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The text of one `## title` section of the README."""
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks in `text`."""
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


@pytest.mark.long
def test_python_api_block_runs_as_written_offline(tmp_path):
    (code,) = fenced(section("Python API"), "python")
    done = run_offline(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gradients agree" in done.stdout
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", done.stdout).group(1))
    assert accuracy > 80  # the smoke model on the sample: a broken run stays near 10%


def help_options(command: list[str]) -> set[str]:
    """The long option names a command's real `--help` lists (without --help)."""
    result = run_cli([*command, "--help"])
    assert result.exit_code == 0, result.stderr
    options = result.stdout.split("Options:")[1]
    names = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", options, re.M))
    names |= {f"--[no-]{m}" for m in re.findall(r"--([a-z-]+) / --no-\1", options)}
    names -= {f"--{m}" for m in re.findall(r"--([a-z-]+) / --no-\1", options)}
    return names - {"--help"}


def help_commands(command: list[str]) -> list[str]:
    """The subcommands a group's `--help` lists."""
    text = run_cli([*command, "--help"]).stdout
    if "Commands:" not in text:
        return []
    return re.findall(r"^  ([a-z][a-z-]*)\s", text.split("Commands:")[1], re.M)


def readme_synopsis() -> dict[str, set[str]]:
    """{command: option names} from the README's command list."""
    (block,) = fenced(section("Command line"), "text")
    entries: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        if line.startswith("mnist-jax "):
            words = re.match(r"mnist-jax ((?:[a-z][a-z-]* ?)*)", line).group(1).split()
            current = " ".join(words) or line.split()[1]  # `mnist-jax --version`
            entries[current] = set()
        names = re.findall(r"(--(?:\[no-\])?[a-z][a-z-]*)", line)
        entries[current] |= {n for n in names}
    return entries


def all_commands(prefix: list[str]) -> list[list[str]]:
    found = []
    for name in help_commands(prefix):
        sub = help_commands([*prefix, name])
        found += all_commands([*prefix, name]) if sub else [[*prefix, name]]
    return found


def test_command_list_in_the_readme_equals_the_real_help():
    synopsis = readme_synopsis()
    commands = all_commands([])
    assert {" ".join(c) for c in commands} == set(synopsis) - {"--version"}
    for command in commands:
        assert synopsis[" ".join(command)] == help_options(command), command


@pytest.mark.parametrize("flag", ["<bool>", "<str>"])
def test_no_help_shows_a_free_form_metavar(flag):
    for command in all_commands([]):
        assert flag not in run_cli([*command, "--help"]).stdout, command


def test_readme_is_short_and_its_links_reach_files_that_exist():
    assert len(README.splitlines()) <= 250
    targets = re.findall(r"\]\(((?:docs|examples)/[^)#]+)", README)
    assert "docs/index.md" in targets
    for target in targets:
        assert (ROOT / target).exists(), target


def test_command_table_names_every_command():
    table = re.findall(r"^\| `mnist-jax ([a-z-]+)", section("Command line"), re.M)
    assert set(table) == set(help_commands([]))
