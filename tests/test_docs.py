"""The documentation's promises, executed or checked.

- The CLI reference (docs/cli.md) equals what `scripts/cli_docs.py` renders from `--help` now.
- Every ```python block in docs/*.md runs as written, offline.
- Every `--8<--` include names a file, and a section of it that exists.
- Every command in a ```sh or ```console block, and every `mnist-jax ...` code span in the
  docs' and the README's text, is parsed and checked, not run (most train on
  full MNIST for minutes): a `mnist-jax` command's subcommands and options against its real
  `--help` (through `launch ... --`), a script's options against the script's `--help`, a
  `make` target against the Makefile, an extra against pyproject.toml, a test file's path.
- The gradcheck and eval outputs the guides show have the shape of a real run's output (each
  line's words, numbers aside), produced here on the bundled sample.
"""

import functools
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT, run_cli, run_offline
from tests.trained_model import shared_cli_smoke_run  # noqa: F401 (the cli_smoke_run fixture)

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```$", re.S | re.M)


def blocks(language: str) -> list[tuple[str, str]]:
    """(page name, body) of every fenced block of `language` in the docs, indent removed."""
    found = []
    for page in PAGES:
        for indent, lang, body in FENCE.findall(page.read_text()):
            if lang == language:
                lines = [line.removeprefix(indent) for line in body.splitlines()]
                found.append((page.name, "\n".join(lines) + "\n"))
    return found


def test_cli_reference_equals_the_real_help():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + "\nrun: python scripts/cli_docs.py"


def test_cli_reference_covers_every_command():
    page = (DOCS / "cli.md").read_text()
    for name in ("train", "eval", "gradcheck", "data import", "theta export", "launch"):
        assert f"## `mnist-jax {name}`" in page


CODE = [(page, body) for page, body in blocks("python") if "--8<--" not in body]


def test_the_docs_have_python_blocks_to_run():
    assert any(page == "numpy-to-jax.md" for page, _ in CODE)


@pytest.mark.parametrize("page, code", CODE, ids=[page for page, _ in CODE])
@pytest.mark.long
def test_python_block_runs_as_written_offline(page, code, tmp_path):
    done = run_offline(["-c", code], tmp_path, timeout=300)
    assert done.returncode == 0, f"{page}: {done.stderr[-3000:]}"


INCLUDES = [
    (page.name, path, section)
    for page in [*PAGES, ROOT / "README.md"]
    for path, section in re.findall(r'--8<-- "([^":]+)(?::([\w-]+))?"', page.read_text())
]


@pytest.mark.parametrize("page, path, section", INCLUDES)
def test_included_source_exists(page, path, section):
    text = (ROOT / path).read_text()
    if section:
        start, end = f"--8<-- [start:{section}]", f"--8<-- [end:{section}]"
        assert text.count(start) == 1 and text.count(end) == 1, (page, path, section)
        assert text.index(start) < text.index(end)


def test_every_page_is_in_the_site_navigation():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert f": {page.name}" in config, page.name


# --- commands


def commands() -> list[tuple[str, str]]:
    """(page, command line) for every command in the docs' sh and console blocks."""
    found = []
    for language in ("sh", "console"):
        for page, body in blocks(language):
            for line in body.splitlines():
                if language == "console":  # output lines are not commands
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                line = re.sub(r"(^|\s)#.*", "", line).strip()  # comments, #SBATCH lines
                for part in filter(None, (p.strip() for p in line.split("&&"))):
                    found.append((page, part))
    return found


def options_of(help_text: str) -> set[str]:
    """The option names (long and short) a `--help` declares."""
    section = re.split(r"^(?:Options|options):?\s*$", help_text, flags=re.M)[-1]
    names = set()
    for line in section.splitlines():
        if match := re.match(r"^  (-.*?)(?:  |$)", line):
            names |= set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", match.group(1)))
    return names


@functools.cache
def help_of(*path: str) -> str:
    """`mnist-jax PATH --help`, once per path."""
    result = run_cli([*path, "--help"])
    assert result.exit_code == 0, path
    return result.stdout


@functools.cache
def script_help(script: str) -> str:
    """`python scripts/NAME.py --help`, once per script."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=60
    ).stdout


def check_mnist_jax(words: list[str]) -> None:
    """Check `mnist-jax WORDS`: the subcommands exist, the options are the command's."""
    path: list[str] = []
    while words and not words[0].startswith("-"):
        text = help_of(*path)
        if "Commands:" not in text:
            break
        listed = re.findall(r"^  ([a-z][a-z-]*)\s", text.split("Commands:")[1], re.M)
        assert words[0] in listed, f"mnist-jax {' '.join(path)}: no command {words[0]!r}"
        path.append(words.pop(0))
    known = options_of(help_of(*path))
    rest = words
    if path == ["launch"] and "--" in words:  # the launched command is checked too
        rest, launched = words[: words.index("--")], words[words.index("--") + 1 :]
        check_mnist_jax(launched)
    for word in rest:
        if word.startswith("-"):
            assert word.split("=")[0] in known, f"mnist-jax {' '.join(path)}: no option {word}"


def check_extras(words: list[str]) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for word in words:
        for listed in re.findall(r"\[([\w,-]+)\]", word):
            for extra in listed.split(","):
                assert extra in extras, f"no extra {extra!r} in pyproject.toml"


def check(line: str) -> None:
    words = shlex.split(line)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the command
        words.pop(0)
    if words[0] == "srun":
        words.pop(0)
    if words[0] == "taskset":  # pinned to cores: taskset -c LIST COMMAND
        del words[:3]
    if words[-1] == "&":  # run in the background
        words.pop()
    program, args = words[0], words[1:]
    if program in ("mnist-jax", ".venv/bin/mnist-jax"):
        check_mnist_jax(args)
    elif program == "python" and args[0].startswith("scripts/"):
        known = options_of(script_help(args[0]))
        for word in args[1:]:
            if word.startswith("-"):
                assert word in known, f"{args[0]}: no option {word}"
    elif program == "python" and args[:2] == ["-m", "pytest"]:
        assert (ROOT / args[2].split("::")[0]).is_file(), args[2]
    elif program == "python" and args[:2] == ["-m", "venv"]:
        pass
    elif program in ("pip", ".venv/bin/pip") or (program == "python" and args[:2][-1] == "pip"):
        check_extras(args)
    elif program == "tensorboard":  # the viewer, which the tensorboard extra installs
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        viewer = [
            r
            for r in extras["optional-dependencies"]["tensorboard"]
            if r.startswith("tensorboard>")
        ]
        assert viewer and args[0] == "--logdir" and len(args) == 2, line
    elif program == "curl":  # a request to `mnist-jax serve`: an endpoint it has
        from mnist_jax.serving import serve

        [url] = [word for word in args if word.startswith("http://")]
        assert "/" + url.split("/", 3)[3] in serve.DECODERS, f"serve has no endpoint {url}"
    elif program == "make":
        makefile = (ROOT / "Makefile").read_text()
        assert re.search(rf"^{re.escape(args[0])}:", makefile, re.M), f"no make target {args[0]}"
    else:
        raise AssertionError(f"the docs test does not know how to check: {line}")


def inline_commands() -> list[tuple[str, str]]:
    """(page, command) for every `mnist-jax ...` code span in the docs' text and the README."""
    found = []
    for page in [*PAGES, ROOT / "README.md"]:
        if page.name == "cli.md":  # generated from --help, kept equal to it above
            continue
        text = FENCE.sub("", page.read_text())
        for span in re.findall(r"`((?:[A-Z_]+=\S+ )*mnist-jax [^`]+)`", text):
            if "/ " in span or "..." in span or "RUN_DIR" in span:  # a list or a placeholder
                continue
            found += [(page.name, part.strip()) for part in span.split("&&")]
    return found


COMMANDS = commands() + inline_commands()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("page, line", COMMANDS, ids=[f"{p}:{c[:40]}" for p, c in COMMANDS])
def test_command_in_the_docs_is_valid(page, line):
    check(line)


@pytest.mark.parametrize(
    "line",
    [
        "mnist-jax train --no-such-flag",
        "mnist-jax evaluate x",
        "curl --data-binary @d.png http://127.0.0.1:8000/nowhere",
    ],
)
def test_command_check_can_fail(line):
    with pytest.raises(AssertionError):
        check(line)


# --- outputs shown in the guides


def shape(text: str) -> list[str]:
    """Each line's words with the numbers and the dataset's name taken out."""
    text = re.sub(r"mnist(-sample)?", "DATA", text)
    text = re.sub(r"[\d.,]+(e[+-]\d+)?%?|\d+x\d+", "N", text)
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def shown_output(page: str, command: str) -> str:
    """The output under `$ ...command...` in a console block of `page`."""
    for name, body in blocks("console"):
        if name == page and command in body.splitlines()[0]:
            return "\n".join(body.splitlines()[1:])
    raise AssertionError(f"{page}: no console block for {command}")


@pytest.mark.long
def test_gradcheck_output_shown_has_the_shape_of_a_real_one():
    result = run_cli(["gradcheck", "--dataset", "sample", "--config", "smoke"])
    assert result.exit_code == 0, result.output
    shown = shape(shown_output("gradients.md", "mnist-jax gradcheck"))
    real = shape(result.stdout)
    # the first line names the config and its model; the rest must read the same
    assert real[1:] == shown[1:]
    assert real[0].split(":")[0].split()[0] == shown[0].split(":")[0].split()[0] == "gradcheck"


def test_eval_output_shown_has_the_shape_of_a_real_one(cli_smoke_run):
    out, _ = cli_smoke_run  # `train --config smoke --epochs 1`, its exit code checked there
    result = run_cli(["eval", str(out)])
    assert result.exit_code == 0, result.output
    shown = shape(shown_output("inspect.md", "mnist-jax eval"))
    assert shape(result.stdout) == shown


def test_architecture_page_maps_every_module():
    page = (DOCS / "architecture.md").read_text()
    modules = [p for p in (ROOT / "mnist_jax").rglob("*.py") if not p.name.startswith("__")]
    assert modules
    missing = [p.name for p in modules if not re.search(rf"\b{re.escape(p.name)}\b", page)]
    assert not missing, f"not on the module map in docs/architecture.md: {missing}"
