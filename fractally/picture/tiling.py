"""Cutting a spec's image into tiles and putting the pieces back.

Tiles are numbered row-major; edge tiles are smaller when the image size is not
a multiple of ``tile_size``. Because the kernel computes every pixel from its
index in the whole image, pasting tiles gives exactly the whole-image render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from fractally.picture.spec import RenderSpec


@dataclass(frozen=True)
class Tile:
    index: int
    row: int  # tile row and column in the grid
    col: int
    y0: int  # first pixel row / column in the image
    x0: int
    height: int
    width: int


def grid(spec: RenderSpec) -> tuple[int, int]:
    """(tile rows, tile columns)."""
    return math.ceil(spec.height / spec.tile_size), math.ceil(spec.width / spec.tile_size)


def tile_count(spec: RenderSpec) -> int:
    rows, cols = grid(spec)
    return rows * cols


def tile(spec: RenderSpec, index: int) -> Tile:
    rows, cols = grid(spec)
    if not 0 <= index < rows * cols:
        raise IndexError(f"tile index {index} is outside 0..{rows * cols - 1}")
    r, c = divmod(index, cols)
    t = spec.tile_size
    y0, x0 = r * t, c * t
    return Tile(index, r, c, y0, x0, min(t, spec.height - y0), min(t, spec.width - x0))


def tiles(spec: RenderSpec) -> Iterator[Tile]:
    for index in range(tile_count(spec)):
        yield tile(spec, index)


def band(spec: RenderSpec, row: int) -> list[Tile]:
    """The tiles of one tile row, left to right: what assemble holds in memory at once."""
    _, cols = grid(spec)
    return [tile(spec, row * cols + c) for c in range(cols)]


def render_tile_arrays(spec: RenderSpec, t: Tile, store: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and smooth values of one tile. A deep view reads its job's reference orbits from
    ``store`` (computed in memory without one: ``fractally.picture.orbit``), cut as the view renders
    them (``fractally.picture.period``)."""
    if spec.deep is not None:
        from fractally.picture import period, perturb

        return perturb.render_window(spec, period.view_orbits(spec, store), t.y0, t.x0, t.height, t.width)
    from fractally.picture.kernel import render_window  # numba loads on first use, not when a spec is checked

    return render_window(spec, t.y0, t.x0, t.height, t.width)
