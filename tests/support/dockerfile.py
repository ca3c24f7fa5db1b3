"""The one Dockerfile, read with Docker's own parser (the ``dockerfile`` package): its stages by name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def commands() -> list[Any]:
    parser = pytest.importorskip("dockerfile")
    return list(parser.parse_file(str(DOCKERFILE)))


def stages() -> dict[str, list[Any]]:
    """Each named stage's own commands, its FROM first."""
    out: dict[str, list[Any]] = {}
    current: list[Any] = []
    for c in commands():
        if c.cmd == "FROM":
            current = []
            out[c.value[2].lower() if len(c.value) > 2 else str(len(out))] = current
        current.append(c)
    return out


def lineage(target: str) -> list[Any]:
    """The commands that make ``target``'s image: its parent stages' (FROM a stage), then its own."""
    all_stages = stages()
    chain = []
    name: str | None = target
    while name in all_stages:
        chain.insert(0, all_stages[name])
        name = all_stages[name][0].value[0].lower()
    return [c for stage in chain for c in stage]


def env(target: str) -> dict[str, str]:
    """ENV of ``target``'s image, with ``${ARG}`` defaults filled in."""
    args = dict(c.value[0].split("=", 1) for c in commands() if c.cmd == "ARG" and "=" in c.value[0])
    out: dict[str, str] = {}
    for c in lineage(target):
        if c.cmd == "ENV":
            for key, value in zip(c.value[::2], c.value[1::2]):
                value = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), value)
                out[key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return out


def last(target: str, instruction: str) -> Any:
    """The instruction that is in force in ``target``'s image (the last one of its lineage)."""
    return [c for c in lineage(target) if c.cmd == instruction][-1]
