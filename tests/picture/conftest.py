"""Fixtures of the picture's tests: exact references for deep views."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def unfrozen_gc() -> Iterator[None]:
    """Undo ``gc.freeze()`` after the test, so the rest of the session collects as usual."""
    yield
    gc.unfreeze()



@pytest.fixture(scope="session")
def exact_count() -> Callable[..., int]:
    """``exact_count(spec, i, j)``: a deep view's pixel counted in mpmath (``tests.support.reference.exact_deep_count``)."""
    from tests.support.reference import exact_deep_count

    return exact_deep_count



@pytest.fixture(scope="session")
def julia_repelling_point() -> tuple[str, str]:
    """-β for c = -0.8+0.156i, β = (1 + √(1-4c))/2 its repelling fixed point: a point of the Julia set
    (so every depth around it has detail), to 1,050 digits."""
    import mpmath

    with mpmath.workdps(1_100):
        beta = (1 + mpmath.sqrt(1 - 4 * mpmath.mpc("-0.8", "0.156"))) / 2
        return (mpmath.nstr(-beta.real, 1_050, min_fixed=-2, max_fixed=2),
                mpmath.nstr(-beta.imag, 1_050, min_fixed=-2, max_fixed=2))



@pytest.fixture(scope="session")
def deep_minibrot() -> dict:
    """A view of a period-797 minibrot 3e-599 wide beside c = i and its surroundings (counts 7,800 to
    10,000, about a tenth inside): where orbits pass within 1e-599 of 0 every period."""
    from tests.support.reference import minibrot_nucleus

    re_, im_, period, log_size = minibrot_nucleus(("3.1e-302", "1." + "0" * 301 + "7"), 2_600)
    scale = f"{10 ** (log_size % 1) * 8:.2f}e{int(log_size // 1)}"  # 8 times its size
    return {"fractal": "mandelbrot", "center": [re_, im_], "scale": scale, "period": period}

