"""One deep mandelbrot view rendered by fractalshades, for bench/deep.py (run with fractalshades' own Python).

fractalshades is not a project dependency (it pulls in PyQt6, and its sdist builds against the system's
MPFR/MPC headers), so bench/deep.py runs this file with the interpreter given as --fractalshades-python.

    python bench/deep_fractalshades.py X Y DX WIDTH HEIGHT MAX_ITER

Renders the view twice in one process (the first run compiles fractalshades' numba code) into fresh
folders and prints JSON: the second run's seconds, and the first's. Perturbation with its reference
orbit and bilinear approximation (BLA_eps 1e-6, its default), escape radius 2, no interior detection,
no derivatives: the same work as a fractally render, coloured by its continuous iteration count.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time


def render(x: str, y: str, dx: str, width: int, height: int, max_iter: int) -> float:
    import fractalshades as fs
    import fractalshades.colors as fscolors
    import fractalshades.models as fsm
    from fractalshades.colors.layers import Bool_layer, Color_layer
    from fractalshades.postproc import Continuous_iter_pp, Postproc_batch, Raw_pp

    digits = int(dx.split("e-")[1]) + 30 if "e-" in dx else 30  # the view's digits and 30 more
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        fractal = fsm.Perturbation_mandelbrot(folder)
        fractal.zoom(precision=digits, x=x, y=y, dx=dx, nx=width, xy_ratio=width / height, theta_deg=0.0)
        fractal.calc_std_div(calc_name="div", subset=None, max_iter=max_iter, M_divergence=2.0,
                             epsilon_stationnary=1e-3, BLA_eps=1e-6, interior_detect=False, calc_dzndc=False)
        batch = Postproc_batch(fractal, "div")
        batch.add_postproc("cont_iter", Continuous_iter_pp())
        batch.add_postproc("interior", Raw_pp("stop_reason", func="x != 1"))
        plotter = fs.Fractal_plotter(batch)
        plotter.add_layer(Bool_layer("interior", output=False))
        plotter.add_layer(Color_layer("cont_iter", func="np.log(x)", colormap=fscolors.cmap_register["classic"],
                                      probes_z=[0, 1], output=True))
        plotter.plot()
        return time.perf_counter() - started


def main() -> int:
    x, y, dx = sys.argv[1:4]
    width, height, max_iter = map(int, sys.argv[4:7])
    first = render(x, y, dx, width, height, max_iter)
    second = render(x, y, dx, width, height, max_iter)
    print(json.dumps({"seconds": round(second, 3), "first_seconds": round(first, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
