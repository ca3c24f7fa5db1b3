"""Pictures that cannot go stale: every render in the README and docs/ is what the code makes now.

``make pictures`` (docs/pictures.py) makes them; these tests make each CLI render again and compare the
bytes. The explorer's screenshot is left out of the comparison: a browser's anti-aliasing is not the
same bits on every machine. The plots are measurements a bench script draws from its own run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("pictures", DOCS / "pictures.py")
pictures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pictures)


def shown_pictures() -> set[str]:
    """The docs/ pictures the README and the docs/ pages show."""
    names = set(re.findall(r"\]\(docs/([\w.-]+\.png)\)", (ROOT / "README.md").read_text()))
    for page in DOCS.glob("*.md"):
        names |= set(re.findall(r"\]\(([\w.-]+\.png)\)", page.read_text()))
    return names


@pytest.mark.parametrize("name", sorted(pictures.RENDERS))
def test_a_committed_render_is_what_the_code_makes_now(name: str, tmp_path: Path) -> None:
    pictures.render(name, tmp_path / name)
    assert (tmp_path / name).read_bytes() == (DOCS / name).read_bytes(), f"docs/{name} is stale: run make pictures"


def plotted() -> set[str]:
    """The pictures a bench draws: named by ``--plot …/name.png`` in a bench script or a docs/ page, or
    written to docs/ by a bench's default."""
    benches = [path.read_text() for path in (ROOT / "bench").glob("*.py")]
    texts = [*benches, *(path.read_text() for path in DOCS.glob("*.md"))]
    named = {name for text in texts for name in re.findall(r"--plot \S*?([\w.-]+\.png)", text)}
    return named | {name for text in benches for name in re.findall(r"\"docs\" / \"([\w.-]+\.png)\"", text)}


def test_every_picture_shown_is_made_by_make_pictures_or_by_a_bench() -> None:
    made = set(pictures.RENDERS) | {pictures.SCREENSHOT[0]} | plotted()
    orphans = shown_pictures() - made
    assert shown_pictures(), "no picture found in the README and docs/: the pattern no longer matches"
    assert not orphans, f"nothing makes {sorted(orphans)}: add it to docs/pictures.py or to its bench"
