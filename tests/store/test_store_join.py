"""``ObjectStore.join``: one object from pieces, on both backends; on S3 big pieces are copied in place."""

from __future__ import annotations

import os

import pytest

from fractally.store import ObjectStore

MIB = 1024 * 1024


def test_join_writes_objects_and_inline_bytes_in_order(store: ObjectStore) -> None:
    store.put("p/1", b"one-")
    store.put("p/2", b"two-")
    assert store.join("out", [b"<", "p/1", "p/2", b">"]) is True
    assert store.get("out") == b"<one-two->"


def test_join_takes_bytes_still_being_made_from_a_callable(store: ObjectStore) -> None:
    store.put("made/1", b"one-")
    assert store.join("made-out", [b"<", "made/1", lambda: b"two", b">"]) is True
    assert store.get("made-out") == b"<one-two>"


def test_join_copies_big_pieces_before_a_part_still_being_made(store: ObjectStore) -> None:
    """The multipart case: a callable after a copied piece, its bytes and the tail in the last part."""
    big = os.urandom(6 * MIB)
    store.put("made/big", big)
    assert store.join("made-big", ["made/big", lambda: b"last", b"!"]) is True
    assert store.get("made-big") == big + b"last!"


def test_join_if_absent_leaves_an_existing_object(store: ObjectStore) -> None:
    store.put("p/1", b"new")
    store.put("out", b"old")
    assert store.join("out", ["p/1"], if_absent=True) is False
    assert store.get("out") == b"old"


def test_join_if_absent_of_big_parts_leaves_an_existing_object(store: ObjectStore) -> None:
    """A multipart join (S3) as well: its completion is conditional."""
    store.put("big/a", os.urandom(6 * MIB))
    store.put("out", b"old")
    assert store.join("out", ["big/a", b"tail"], if_absent=True) is False
    assert store.get("out") == b"old"


def test_list_sizes_gives_each_objects_size(store: ObjectStore) -> None:
    store.put("s/a", b"12345")
    store.put("s/b", b"")
    assert store.list_sizes("s/") == {"s/a": 5, "s/b": 0}


def test_join_of_pieces_above_the_part_minimum_is_byte_exact(store: ObjectStore) -> None:
    """Small pieces before, between and after big ones: buffered parts and copied parts alike."""
    pieces = {"big/0": os.urandom(100), "big/1": os.urandom(6 * MIB), "big/2": os.urandom(3 * MIB),
              "big/3": os.urandom(5 * MIB + 7), "big/4": os.urandom(10)}
    for key, data in pieces.items():
        store.put(key, data)
    assert store.join("whole", [b"H" * 33, *pieces, b"T" * 12], sizes=store.list_sizes("big/"))
    assert store.get("whole") == b"H" * 33 + b"".join(pieces.values()) + b"T" * 12


def test_s3_join_copies_big_pieces_inside_the_store(s3_store_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece of 5 MiB or more that starts a part is never read by the joining process."""
    store = s3_store_factory()
    store.put("c/0", os.urandom(6 * MIB))  # the head goes in front: read
    store.put("c/1", os.urandom(5 * MIB))  # starts a part: copied
    store.put("c/2", os.urandom(7 * MIB))  # starts a part: copied
    read = []
    get = store.get
    monkeypatch.setattr(store, "get", lambda key: read.append(key) or get(key))
    assert store.join("joined", [b"h", "c/0", "c/1", "c/2", b"t"])
    assert read == ["c/0"]
    assert len(get("joined")) == 18 * MIB + 2


def test_join_of_many_small_pieces_keeps_their_order(store: ObjectStore) -> None:
    """More pieces than are read ahead at once, of uneven sizes, crossing the 5 MiB part minimum."""
    pieces = {f"many/{i:03d}": os.urandom(1000 + i * 97 if i % 7 else 2 * MIB) for i in range(40)}
    for key, data in pieces.items():
        store.put(key, data)
    assert store.join("many-out", list(pieces), sizes=store.list_sizes("many/"))
    assert store.get("many-out") == b"".join(pieces.values())


def test_delete_many_removes_every_key_and_ignores_missing_ones(store: ObjectStore) -> None:
    keys = [f"gone/{i}" for i in range(5)]
    for key in keys:
        store.put(key, b"x")
    store.put("kept/0", b"y")
    store.delete_many([*keys, "gone/never-was"])
    assert store.list("gone/") == []
    assert store.list("kept/") == ["kept/0"]
