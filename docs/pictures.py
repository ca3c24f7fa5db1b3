"""Every picture in the README and in docs/, and how the current code makes it: ``make pictures``.

    .venv/bin/python docs/pictures.py            # all of them, into docs/
    .venv/bin/python docs/pictures.py julia.png  # one

The renders are ``fractally render`` command lines, the same bytes on every machine (the arithmetic
rule), so tests/ops/test_pictures.py renders each again and fails when a committed picture is not
what the code now makes. The explorer's screenshot comes from the browser test
(tests/web/test_browser.py saves it in test-artifacts/); a browser's anti-aliasing is not the same
bits everywhere, so the test leaves it out. The plots (the other PNGs here) are measurements: each
bench script draws its own from a run (docs/benchmarks.md names the command), and only a new run
changes them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent


def _minibrot_center() -> str:
    return ",".join(json.loads((DOCS / "deep-minibrot.json").read_text())["center"])


#: picture -> the arguments of ``fractally render`` that make it (the output file is added).
RENDERS: dict[str, list[str]] = {
    "julia.png": ["--c=-0.8,0.156", "--width", "1600", "--height", "900", "--max-iter", "1000"],
    "mandelbrot-seahorse.png": ["--fractal", "mandelbrot", "--center=-0.7435,0.1314", "--scale", "0.004",
                                "--width", "800", "--height", "450", "--max-iter", "2000", "--colormap", "dusk"],
    "deep-julia.png": [
        "--c=-0.8,0.156", "--scale", "1e-100", "--width", "800", "--height", "450", "--max-iter", "1500",
        "--colormap", "dusk",
        "--center=-1.52750311864353461078974640244491533756674594781170816033987519700320301109745138718922408418720970362852781184464702165676755110489763815,"
        "0.075912178352287867071814194826348046366422194847978022539732593449186891503078959907318388553620835791521773673509239408146903775435705768"],
    "deep-minibrot.png": ["--fractal", "mandelbrot", "--center=" + _minibrot_center(), "--scale", "2.163e-598",
                          "--width", "800", "--height", "450", "--max-iter", "20000", "--colormap", "dusk"],
}
#: The browser test's screenshot, and where the test leaves it.
SCREENSHOT = ("explorer.png", ROOT / "test-artifacts" / "explorer.png")


def render(name: str, out: Path) -> None:
    """Make picture ``name`` into ``out`` with the CLI of this checkout."""
    subprocess.run([sys.executable, "-m", "fractally.cli", "render", *RENDERS[name], "-q", "-o", str(out)],
                   cwd=ROOT, check=True)


def screenshot() -> None:
    """Run the browser test that takes the explorer's picture, and copy it into docs/."""
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/web/test_browser.py",
                    "-k", "test_colormap_picker_recolours_both_panes"], cwd=ROOT, check=True)
    shutil.copyfile(SCREENSHOT[1], DOCS / SCREENSHOT[0])


def main(names: list[str]) -> int:
    for name in names or [*RENDERS, SCREENSHOT[0]]:
        if name == SCREENSHOT[0]:
            screenshot()
        else:
            render(name, DOCS / name)
        print(f"docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
