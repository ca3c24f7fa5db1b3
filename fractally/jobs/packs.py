"""Tile packs: the tiles of one batch stored as one object, and reading a tile however it was stored.

A store request costs far more than a tiny tile's pixels (a request to an S3-compatible server
takes milliseconds of CPU on each side; a 16 x 16 tile renders in microseconds), so a batch of
tiles (``render_tile`` called with ``first`` and ``count``) writes its tiles as one pack instead of
one object each::

    tiles/<pixels hash>/<first:07d>-<end:07d>.pack   msgpack [first, [tile, tile, ...]]

Each tile in it is the same bytes a single tile object holds (``codec.encode_tile``), and a tile is
still the unit of caching: which tiles a picture has is read off the names of its packs and single
tiles together (``jobs.tiles_located``), so a later job sends only the tiles no pack or tile object holds.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import msgpack

from fractally import jobs
from fractally.picture.codec import decode_tile
from fractally.picture.compose import Part
from fractally.store import ObjectStore

def encode_pack(first: int, tiles: list[bytes]) -> bytes:
    return msgpack.packb([first, tiles], use_bin_type=True)


def decode_pack(data: bytes) -> tuple[int, list[bytes]]:
    first, tiles = msgpack.unpackb(data, raw=False)
    return int(first), list(tiles)


class TileReader:
    """Reads a job's tiles by index, from packs or single tile objects; keeps the last pack it read,
    since an assembler asks for tiles in order and a pack holds a run of them.

    ``located``: the listing's answer (``jobs.tiles_located``) if the caller has it; otherwise the
    tiles are listed when the first is read. A tile the listing does not know (stored since) is
    read from its tile object.
    """

    #: Objects ``prefetch`` reads at once: each read mostly waits on the store, not on this process.
    READS_IN_FLIGHT = 16

    def __init__(self, store: ObjectStore, job: jobs.Job, located: dict[int, str] | None = None) -> None:
        self.store = store
        self.job = job
        self.located = located
        self._pack_key: str | None = None
        self._pack: tuple[int, list[bytes]] = (0, [])
        self._fetched: dict[str, bytes] = {}

    def _key(self, index: int) -> str:
        if self.located is None:
            self.located = jobs.tiles_located(self.store, self.job)
        return self.located.get(index) or jobs.tile_key(self.job.pixels_hash, index)

    def prefetch(self, indices: Iterable[int]) -> None:
        """Read every object that holds one of ``indices`` now, READS_IN_FLIGHT at a time (kept until
        read): a band's packs in the time of about one store round trip instead of one each."""
        keys = sorted({self._key(i) for i in indices} - self._fetched.keys() - {self._pack_key})
        with ThreadPoolExecutor(self.READS_IN_FLIGHT) as pool:
            self._fetched.update(zip(keys, pool.map(self.store.get, keys)))

    def _get(self, key: str) -> bytes:
        data = self._fetched.pop(key, None)
        return self.store.get(key) if data is None else data

    def read(self, index: int) -> Part:
        key = self._key(index)
        if key.endswith(".pack"):
            if key != self._pack_key:
                self._pack, self._pack_key = decode_pack(self._get(key)), key
            first, tiles = self._pack
            data = tiles[index - first]
        else:
            data = self._get(key)
        decoded = decode_tile(data)
        return decoded.counts, decoded.smooth
