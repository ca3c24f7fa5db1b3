"""The colouring loop of ``fractally.colour`` (numba): one pass per pixel, straight into PNG rows.

The transfer is ``colour.colourize``'s (the docstring there says what it does and
why); this module only makes it cheap. A numpy version walks the image ten times
(clip, divide, scale, round, compare, gather, copy into the PNG rows) and cost more
CPU than the escape-time kernel on light views; this loop reads each count and
smooth value once and writes three bytes. Every step is a float32 operation in the
order numpy performs it (no fastmath, so no reassociation or FMA), so the colours
are the same bits as the numpy formulation, which ``tests/test_colour.py`` keeps
as the reference.

Imported lazily by ``fractally.colour``: validating a spec must not load numba.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

_ROWS = types.Array(types.uint8, 2, "A")
#: Every signature, compiled (or loaded from numba's cache) at import: counts come as the tiles
#: store them (uint8, uint16 or uint32, see ``codec.tile_counts_dtype``); the arrays may be views, and
#: the inputs read-only (tiles decoded from the store's bytes are); writable arrays convert to these.
SIGNATURES = [
    types.void(types.Array(counts, 2, "A", readonly=True), types.Array(types.float32, 2, "A", readonly=True),
               types.int64, types.boolean,
               types.float32, types.float32, types.Array(types.uint8, 2, "C", readonly=True), _ROWS)
    for counts in (types.uint8, types.uint16, types.uint32)
]


@numba.njit(SIGNATURES, nogil=True, cache=True, fastmath=False, error_model="numpy")
def colour_rows(counts: np.ndarray, smooth: np.ndarray, max_iter: int, cyclic: bool, knee: np.float32,
                scale: np.float32, table: np.ndarray, out: np.ndarray) -> None:
    """Colour (h, w) counts/smooth into ``out``, an (h, 3*w) uint8 view (e.g. PNG rows after their filter byte).

    ``table`` is (n + 1, 3) uint8: the n-entry LUT, then the inside colour.
    Non-cyclic maps: ``scale`` = (max_iter + knee) / max_iter * (n - 1); cyclic: ``scale`` = 1 / cycle
    (``knee`` unused). Both float32, as numpy would hold them.
    """
    n = table.shape[0] - 1
    top = np.float32(max_iter)
    zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
    size = np.float32(n)
    rows, cols = counts.shape
    for i in range(rows):
        for j in range(cols):
            s = smooth[i, j]
            if not s > zero:  # np.fmax(s, 0): NaN and negatives to 0
                s = zero
            if s > top:
                s = top
            if cyclic:
                s = np.sqrt(s + one) * scale
                s = (s - np.floor(s)) * size
            else:
                s = s / (s + knee) * scale + half
            k = np.intp(s)
            if counts[i, j] >= max_iter:
                k = n
            out[i, 3 * j] = table[k, 0]
            out[i, 3 * j + 1] = table[k, 1]
            out[i, 3 * j + 2] = table[k, 2]
