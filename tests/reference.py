"""A slow, obvious numpy float64 implementation of API.md's rule, independent of the kernel."""

from __future__ import annotations

import numpy as np


def reference_counts(spec) -> np.ndarray:
    """Escape-time counts of the whole image, one numpy operation per step of the rule."""
    w, h = spec.width, spec.height
    j = np.arange(w, dtype=np.float64)
    i = np.arange(h, dtype=np.float64)
    px = spec.center[0] + ((j + 0.5 - w / 2) * spec.scale) / w
    py = spec.center[1] - ((i + 0.5 - h / 2) * spec.scale) / w
    x, y = np.meshgrid(px, py)
    if spec.fractal == "julia":
        cx = np.full_like(x, spec.c[0])
        cy = np.full_like(y, spec.c[1])
    else:
        cx, cy = x, y
        x, y = np.zeros_like(cx), np.zeros_like(cy)
    r2 = spec.escape_radius * spec.escape_radius
    n = np.zeros((h, w), dtype=np.uint32)
    active = np.ones((h, w), dtype=bool)
    for _ in range(spec.max_iter):
        active &= (x * x + y * y) <= r2
        if not active.any():
            break
        nx = (x * x - y * y) + cx
        ny = (2 * x) * y + cy
        x = np.where(active, nx, x)
        y = np.where(active, ny, y)
        n += active
    return n
