"""Fixtures of the store's tests."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from fractally.store import fileio
from tests.support.store import SMALL_PIECE


@pytest.fixture
def small_write_pieces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Large writes cut into ``SMALL_PIECE``-byte pieces (``fractally.store.fileio``), and the size of every
    ``os.write`` and ``os.pwrite`` that ``fileio`` makes, recorded (the bytes still go to the file)."""
    monkeypatch.setattr(fileio, "WRITE_PIECE", SMALL_PIECE)
    sizes: list[int] = []

    def recorded(call):
        def write(fd, data, *offset):
            sizes.append(len(memoryview(data).cast("B")))
            return call(fd, data, *offset)
        return write

    monkeypatch.setattr(fileio, "os", SimpleNamespace(write=recorded(os.write), pwrite=recorded(os.pwrite)))
    return sizes

