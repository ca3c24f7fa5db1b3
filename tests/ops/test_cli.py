"""`fractally render`: the command line of docs/api.md."""

import subprocess
import sys
import time

import numpy as np
from PIL import Image

from fractally.cli import main
from fractally.picture.codec import decode_msgpack
from fractally.picture.kernel import render_window
from fractally.picture.spec import parse_spec


def test_render_msgpack_matches_the_kernel(tmp_path):
    out = tmp_path / "j.msgpack"
    assert main(["render", "--c=-0.8,0.156", "--width", "97", "--height", "61", "--max-iter", "200",
                 "--tile-size", "16", "-q", "-o", str(out)]) == 0
    result = decode_msgpack(out.read_bytes())
    spec = parse_spec({"c": [-0.8, 0.156], "width": 97, "height": 61, "max_iter": 200, "tile_size": 16,
                       "format": "msgpack"})
    counts, smooth = render_window(spec, 0, 0, 61, 97)
    assert np.array_equal(result.counts, counts)
    assert np.array_equal(result.smooth, smooth)
    assert result.spec == spec.normalized()


def test_precision_option_renders_with_the_float32_kernel(tmp_path):
    out = tmp_path / "f.msgpack"
    assert main(["render", "--c=-0.8,0.156", "--width", "64", "--height", "48", "--precision", "float32",
                 "-q", "-o", str(out)]) == 0
    result = decode_msgpack(out.read_bytes())
    spec = parse_spec({"c": [-0.8, 0.156], "width": 64, "height": 48, "precision": "float32", "format": "msgpack"})
    assert result.spec == spec.normalized() and result.spec["precision"] == "float32"
    assert np.array_equal(result.counts, render_window(spec, 0, 0, 48, 64)[0])


def test_precision_float32_on_a_deep_zoom_names_precision_and_writes_nothing(tmp_path, capsys):
    assert main(["render", "--fractal", "mandelbrot", "--center=-0.7435,0.1314", "--scale", "1e-6",
                 "--precision", "float32", "-q", "-o", str(tmp_path / "d.png")]) == 2
    assert "precision" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_render_png_by_suffix(tmp_path):
    out = tmp_path / "m.png"
    assert main(["render", "--fractal", "mandelbrot", "--center=-0.5,0", "--width", "120", "--height", "80",
                 "--colormap", "fire", "-q", "-o", str(out)]) == 0
    image = Image.open(out)
    assert image.size == (120, 80) and image.mode == "RGB"
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 20  # a picture, not a flat fill


def test_unknown_suffix_is_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.jpg"
    assert main(["render", "-q", "-o", str(out)]) == 2
    assert "png or .msgpack" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_spec_option_names_the_field(tmp_path, capsys):
    assert main(["render", "--max-iter", "0", "-q", "-o", str(tmp_path / "a.png")]) == 2
    assert "max_iter" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_is_shown_on_stderr(tmp_path):
    out = tmp_path / "p.png"
    proc = subprocess.run([sys.executable, "-m", "fractally.cli", "render", "--width", "64", "--height", "64",
                           "--tile-size", "16", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "16/16" in proc.stderr and "tile" in proc.stderr
    assert proc.stdout.strip() == str(out)


def test_a_render_removes_the_file_a_killed_render_left_in_its_folder_and_nothing_of_the_users(tmp_path):
    mine = tmp_path / ".partial-notes.txt"  # the user's own file, however it is named
    mine.write_text("keep me")
    slow = subprocess.Popen([sys.executable, "-m", "fractally.cli", "render", "--fractal", "mandelbrot",
                             "--center=-0.2,0", "--scale", "0.6", "--width", "4096", "--height", "4096",
                             "--max-iter", "5000", "-q", "-o", str(tmp_path / "slow.png")])
    try:
        deadline = time.monotonic() + 120
        while not (left := [p for p in tmp_path.glob(".partial-*") if p != mine]):
            assert slow.poll() is None and time.monotonic() < deadline, "the render never started its file"
            time.sleep(0.05)
    finally:
        slow.kill()  # SIGKILL: nothing of it runs, its file stays
        slow.wait()
    assert all(p.exists() for p in left)
    assert main(["render", "--width", "40", "--height", "30", "-q", "-o", str(tmp_path / "next.png")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-notes.txt", "next.png"]
    assert mine.read_text() == "keep me"
