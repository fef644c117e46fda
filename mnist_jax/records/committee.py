"""A committee: several trained runs read as one model whose probabilities are their mean.

`load(path)` is the one way a model is read for `eval`, `predict`, `serve` and `export`: a
checkpoint or run folder gives a committee of one, a committee folder its members. Every
member keeps its own config, so each standardises the pixels its own way (`input_norm`, its
own training split's mean and std) and runs its own network before the probabilities are
averaged (`combine`); a committee of one is its run exactly.

`make(runs, out)` writes a committee folder: a byte-for-byte copy of each member's checkpoint
(the folder stands alone when the runs are deleted) and a small JSON manifest, written last,
each file atomically; nothing in it is pickled or executed:

    DIR/committee.json               {"format": "mnist-jax-committee", "format_version": 1,
                                      "rule": "mean-probs", "members": [{"checkpoint":
                                      "members/0/checkpoint.npz", "source": "runs/seed0",
                                      "epoch": 10, "dataset": "mnist"}, ...]}
    DIR/members/0/checkpoint.npz     the first member's checkpoint, a run folder of its own
    DIR/members/1/checkpoint.npz     ...

Members must share the input size and the classes; they may differ in anything else (seed,
width, depth, activation, output, float type, standardisation). Anchors: Cireşan et al.
2011 and Meier et al. 2011 average the outputs of MLPs trained alike but for their
initialisation or preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mnist_jax import architecture
from mnist_jax.config import Config
from mnist_jax.errors import CheckpointError, DataError
from mnist_jax.files import atomic_write_bytes, atomic_write_json
from mnist_jax.limits import file_size, size_text
from mnist_jax.records import checkpoint

MANIFEST = checkpoint.COMMITTEE_FILE
FORMAT, FORMAT_VERSION = "mnist-jax-committee", 1
RULES = ("mean-probs",)  # the members' probabilities, averaged
MAX_MANIFEST_BYTES = 1 << 20  # a few hundred bytes a member; far more is not a manifest
MAX_MEMBERS = 1000


class Member(NamedTuple):
    """One network of a committee, as its checkpoint holds it."""

    checkpoint: Path  # the checkpoint.npz it was read from
    config: Config
    params: list[dict[str, Any]]  # one {"w": (in, out), "b": (out,)} per layer
    epoch: int
    dataset: str


@dataclasses.dataclass(frozen=True)
class Committee:
    """A model as `load` reads it: one run, or the members of a committee folder.

    Attributes:
        members: one or more networks, all taking `input_size` pixels, all giving the same
            classes.
        rule: how their outputs combine ("mean-probs").
        manifest: the committee.json it was read from, or None for a single run.
    """

    members: tuple[Member, ...]
    rule: str = "mean-probs"
    manifest: Path | None = None

    @property
    def is_committee(self) -> bool:
        """Whether it came from a committee folder (even one of a single member)."""
        return self.manifest is not None

    @property
    def config(self) -> Config:
        """The first member's config: the data a committee is evaluated on."""
        return self.members[0].config

    @property
    def input_size(self) -> int:
        """Pixels per image, the same for every member (784 for MNIST)."""
        return architecture.layer_sizes(self.config)[0]

    @property
    def source(self) -> Path:
        """The file it was read from: the manifest, or the single run's checkpoint."""
        return self.manifest or self.members[0].checkpoint

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rule and each member's checkpoint, architecture, epoch and data."""
        return {
            "committee": str(self.source),
            "rule": self.rule,
            "members": [
                {
                    "checkpoint": str(m.checkpoint),
                    "layers": "-".join(map(str, architecture.layer_sizes(m.config))),
                    "activation": m.config.activation,
                    "input_norm": m.config.input_norm,
                    "seed": m.config.seed,
                    "epoch": m.epoch,
                    "dataset": m.dataset,
                }
                for m in self.members
            ],
        }


def of_run(config: Config, params: list[dict[str, Any]]) -> Committee:
    """A committee of one network given as values (a training `Result`'s config and params)."""
    return Committee((Member(Path(), config, params, 0, ""),))


def combine(probabilities: Sequence[Any]) -> Any:
    """The committee's probabilities: the mean of its members' (N, classes) arrays.

    NumPy or JAX arrays alike (it runs inside jit too); one member's come back unchanged, and
    a mean of float32 and float64 members is float64.
    """
    return sum(probabilities[1:], probabilities[0]) / len(probabilities)


def is_committee(path: str | Path) -> bool:
    """Whether `path` is a committee folder or its committee.json."""
    path = Path(path)
    return (path / MANIFEST).is_file() or (path.name == MANIFEST and path.is_file())


def load(path: str | Path) -> Committee:
    """Read a model: a checkpoint or run folder (a committee of one), or a committee folder.

    Raises:
        CheckpointError: a missing or damaged checkpoint or manifest, or members that do not
            fit together; one line naming the file.
    """
    path = Path(path)
    if not is_committee(path):
        return Committee((_member(path),))
    manifest = path if path.name == MANIFEST else path / MANIFEST
    entries, rule = _read_manifest(manifest)
    members = tuple(_member(_inside(manifest.parent, entry, manifest)) for entry in entries)
    check_compatible(members)
    return Committee(members, rule, manifest)


def _member(path: Path) -> Member:
    ckpt = checkpoint.load(path)
    dataset = str(ckpt.meta.get("dataset", ""))
    return Member(checkpoint.resolve(path), ckpt.config, ckpt.params, ckpt.epoch, dataset)


def _read_manifest(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The manifest's member entries and rule, checked for a format this version reads."""
    if file_size(path) > MAX_MANIFEST_BYTES:
        raise CheckpointError(
            f"{path}: {size_text(file_size(path))}, more than a committee's manifest may be "
            f"({size_text(MAX_MANIFEST_BYTES)})"
        )
    try:
        manifest = json.loads(path.read_bytes().decode())
        version, rule = int(manifest["format_version"]), manifest["rule"]
        entries = manifest["members"]
        if manifest["format"] != FORMAT or not isinstance(entries, list):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        raise CheckpointError(
            f"{path}: not a committee manifest (`mnist-jax committee` writes them)"
        ) from None
    checkpoint.check_format(str(path), version, 0, FORMAT_VERSION)
    if rule not in RULES:
        raise CheckpointError(
            f"{path}: rule {rule!r} is not one this mnist-jax combines ({', '.join(RULES)})"
        )
    if not 1 <= len(entries) <= MAX_MEMBERS:
        raise CheckpointError(
            f"{path}: a committee has 1 to {MAX_MEMBERS} members, not {len(entries)}"
        )
    return entries, rule


def _inside(folder: Path, entry: Any, manifest: Path) -> Path:
    """A member's checkpoint path, which must stay inside the committee folder."""
    relative = entry.get("checkpoint") if isinstance(entry, dict) else None
    parts = Path(relative).parts if isinstance(relative, str) else ("..",)
    if not parts or ".." in parts or Path(relative).is_absolute():
        raise CheckpointError(
            f"{manifest}: a member's checkpoint must be a path inside the committee folder, "
            f"not {relative!r}"
        )
    return folder / relative


def check_compatible(members: Sequence[Member]) -> None:
    """Check that every member takes the first one's input size and gives its classes.

    Raises:
        CheckpointError: one line naming the two runs and what differs.
    """
    first = members[0]
    sizes = architecture.layer_sizes(first.config)
    for member in members[1:]:
        other = architecture.layer_sizes(member.config)
        for index, says in ((0, "takes {} pixels per image"), (-1, "has {} classes")):
            if other[index] != sizes[index]:
                raise CheckpointError(
                    f"{first.checkpoint} and {member.checkpoint} cannot form a committee: the "
                    f"first {says.format(sizes[index])}, the second {says.format(other[index])}"
                )


def check_shared_validation(model: Committee) -> None:
    """Check that every member held out the validation images the first one held out.

    A member's held-out images are drawn by its config's `split_seed` (its `data_seed`, else
    its seed), `validation_size` and `train_size`. Members that drew other splits have trained
    on images the first one holds out, and their committee's validation figures would flatter it.

    Raises:
        DataError: one line naming the first member that differs, and how to share a split.
    """

    def drawn(config: Config) -> dict[str, Any]:
        return {
            "split seed": config.split_seed,
            "validation_size": config.validation_size,
            "train_size": config.train_size,
        }

    first = drawn(model.members[0].config)
    for member in model.members[1:]:
        own = drawn(member.config)
        differ = [f"{key} {own[key]} against {first[key]}" for key in own if own[key] != first[key]]
        if differ:
            raise DataError(
                f"{member.checkpoint} held out other validation images than "
                f"{model.members[0].checkpoint} ({', '.join(differ)}): each member trained on "
                "images another holds out, so the committee's validation figures would flatter "
                "it; train the members with one data_seed, or evaluate another split"
            )


def make(runs: Sequence[str | Path], out: str | Path, rule: str = "mean-probs") -> Committee:
    """Write a committee folder from trained runs; return it as `load` reads it back.

    Args:
        runs: checkpoints or run folders (not committees), one member each, in order.
        out: the committee folder to write; it may not hold a run or a committee already.
        rule: how the members combine (`RULES`).

    Raises:
        CheckpointError: no runs, a run that cannot be read or is a committee, members that
            differ in input size or classes, or an `out` already in use; one line.
        DataError: the folder cannot be written.
    """
    out = Path(out)
    if not runs:
        raise CheckpointError("a committee needs at least one run")
    if rule not in RULES:
        raise CheckpointError(f"rule {rule!r} is not one of {', '.join(RULES)}")
    for run in runs:
        if is_committee(run):
            raise CheckpointError(
                f"{run} is a committee; give its members' run folders ({Path(run) / 'members'})"
            )
    members = [_member(Path(run)) for run in runs]
    check_compatible(members)
    if (out / MANIFEST).exists() or checkpoint.resolve(out).exists():
        raise CheckpointError(f"{out} already holds a run or a committee; choose another --out")
    entries = []
    try:
        for i, member in enumerate(members):
            relative = Path("members") / str(i) / checkpoint.FILE_NAME
            atomic_write_bytes(out / relative, member.checkpoint.read_bytes())
            source = str(member.checkpoint.parent.resolve())
            entries.append(
                {"checkpoint": relative.as_posix(), "source": source, "epoch": member.epoch,
                 "dataset": member.dataset}
            )  # fmt: skip
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "rule": rule,
                    "members": entries}  # fmt: skip
        atomic_write_json(out / MANIFEST, manifest)  # last: a folder without it is no committee
    except OSError as e:
        raise DataError(f"cannot write the committee folder {out}: {e.strerror or e}") from None
    return load(out)


def format_committee(committee: dict[str, Any]) -> list[str]:
    """Render `Committee.to_dict()`: one line per member, then how to use the folder."""
    lines = [f"committee of {len(committee['members'])} ({committee['rule']}):"]
    for m in committee["members"]:
        lines.append(
            f"  {m['checkpoint']}  {m['layers']} {m['activation']}, inputs {m['input_norm']}, "
            f"seed {m['seed']}, epoch {m['epoch']}"
        )
    folder = Path(committee["committee"]).parent
    lines.append(f"eval, predict, serve and export --format onnx take {folder}")
    return lines
