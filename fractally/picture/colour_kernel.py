"""The colouring loop of ``fractally.picture.colour`` (numba): every pixel once, straight into PNG rows.

The transfer is ``colour.colourize``'s (the docstring there says what it does and
why); this module only makes it cheap. A numpy version walks the image ten times
(clip, divide, scale, round, compare, gather, copy into the PNG rows) and cost more
CPU than the escape-time kernel on light views; this loop reads each count and
smooth value once and writes three bytes. Every step is a float32 operation in the
order numpy performs it (no fastmath, so no reassociation or FMA), so the colours
are the same bits as the numpy formulation, which ``tests/picture/test_colour.py`` keeps
as the reference.

Two passes a row: the first turns each pixel into its table index (straight-line float32
arithmetic, which LLVM vectorises when the rows are contiguous), the second looks the colours
up and stores them. In one pass the loop could not be vectorised, and took 2.2 ns a pixel
against 1.1 ns (docs/benchmarks.md, "Stack overhead").

Imported lazily by ``fractally.picture.colour``: validating a spec must not load numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

_ROWS = types.Array(types.uint8, 2, "A")
#: Every signature, compiled (or loaded from numba's cache) at import: counts come as the tiles
#: store them (uint8, uint16 or uint32, see ``codec.tile_counts_dtype``); the inputs are read-only
#: (``colour.colour_into`` passes read-only views). Contiguous inputs (a rendered or decoded tile)
#: get the vectorised "C" code; other views fall back to "A".
SIGNATURES = [
    types.void(types.Array(counts, 2, layout, readonly=True), types.Array(types.float32, 2, layout, readonly=True),
               types.int64, types.boolean,
               types.float32, types.float32, types.Array(types.uint32, 1, "C", readonly=True), _ROWS)
    for layout in ("C", "A")
    for counts in (types.uint8, types.uint16, types.uint32)
]


@numba.njit(SIGNATURES, nogil=True, cache=True, fastmath=False, error_model="numpy")
def colour_rows(counts: np.ndarray, smooth: np.ndarray, max_iter: int, cyclic: bool, knee: np.float32,
                scale: np.float32, table: np.ndarray, out: np.ndarray) -> None:
    """Colour (h, w) counts/smooth into ``out``, an (h, 3*w) uint8 view (e.g. PNG rows after their filter byte).

    ``table`` is (n + 1,) uint32: the n-entry LUT, then the inside colour, each packed as
    ``R | G << 8 | B << 16`` (``colour._packed_table``).
    Non-cyclic maps: ``scale`` = (max_iter + knee) / max_iter * (n - 1); cyclic: ``scale`` = 1 / cycle
    (``knee`` unused). Both float32, as numpy would hold them.
    """
    n = table.shape[0] - 1
    top = np.float32(max_iter)
    zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
    size = np.float32(n)
    rows, cols = counts.shape
    index = np.empty(cols, np.int32)
    for i in range(rows):
        for j in range(cols):
            s = smooth[i, j]
            s = s if s > zero else zero  # np.fmax(s, 0): NaN and negatives to 0
            s = top if s > top else s
            if cyclic:
                s = np.sqrt(s + one) * scale
                s = (s - np.floor(s)) * size
            else:
                s = s / (s + knee) * scale + half
            index[j] = n if counts[i, j] >= max_iter else np.int32(s)
        for j in range(cols):
            rgb = table[index[j]]
            out[i, 3 * j] = rgb & 0xFF
            out[i, 3 * j + 1] = (rgb >> 8) & 0xFF
            out[i, 3 * j + 2] = rgb >> 16
