"""Print pyproject.toml's dependencies pinned to their lower bounds, for pip's `-r`.

Each `name>=X` becomes `name==X` (environment markers kept), and jaxlib is pinned with jax, so
installing the output tests the oldest versions the project claims to support. A dependency
without a `>=` lower bound is an error: every declared range must say where it starts.

    python scripts/lowest_requirements.py [pyproject.toml] > lowest.txt
"""

from __future__ import annotations

import re
import sys
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


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "pyproject.toml"
    with path.open("rb") as f:
        project = tomllib.load(f)["project"]
    print("\n".join(lowest_pins(project["dependencies"])))


if __name__ == "__main__":
    main()
