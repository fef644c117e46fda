"""Print pyproject.toml's dependencies pinned to their lower bounds, for pip's `-r`.

Each `name>=X` becomes `name==X` (environment markers kept), and jaxlib is pinned with jax, so
installing the output tests the oldest versions the project claims to support. A dependency
without a `>=` lower bound is an error: every declared range must say where it starts. Each
`--extra NAME` adds that optional extra's dependencies, pinned the same way.

    python scripts/lowest_requirements.py [pyproject.toml] [--extra images] > lowest.txt
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name, optional extras, the >= bound (other clauses such as ",<3" may follow), optional marker
REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*"
    r">=\s*(?P<low>[^,;\s]+)[^;]*(?:;(?P<marker>.*))?$"
)


def lowest_pins(dependencies: list[str]) -> list[str]:
    """Pin every dependency to its lower bound.

    Args:
        dependencies: PEP 508 strings like 'numpy>=1.24' or 'x>=1; sys_platform == "linux"'.

    Returns:
        Lines like 'numpy==1.24' (with ' ; marker' when the dependency has one), plus jaxlib
        pinned to jax's version.
    """
    pins = []
    for dependency in dependencies:
        match = REQUIREMENT.match(dependency)
        if match is None:
            raise SystemExit(f"error: no '>=' lower bound in dependency {dependency!r}")
        marker = f" ; {match['marker'].strip()}" if match["marker"] else ""
        pins.append(f"{match['name']}=={match['low']}{marker}")
        if match["name"] == "jax":
            pins.append(f"jaxlib=={match['low']}{marker}")
    return pins


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pyproject", nargs="?", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--extra", action="append", default=[], help="an optional extra's name")
    options = parser.parse_args(argv)
    with options.pyproject.open("rb") as f:
        project = tomllib.load(f)["project"]
    extras = project.get("optional-dependencies", {})
    unknown = sorted(set(options.extra) - set(extras))
    if unknown:
        parser.error(f"no such extra in {options.pyproject}: {', '.join(unknown)}")
    dependencies = project["dependencies"] + [d for name in options.extra for d in extras[name]]
    print("\n".join(lowest_pins(dependencies)))


if __name__ == "__main__":
    main()
