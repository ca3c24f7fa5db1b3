"""Batches of tiles and band pieces: how the distributed path scales with the cluster, not the grid.

A job is cut into about as many calls as there are workers (``plan_batches``); a batch stores its
tiles as one pack and, for the whole tile rows it holds, the result's bytes for those bands; the
final assembly joins the pieces in the store. Whatever the cut, the result is byte for byte the one
``fractally render`` writes.
"""

from __future__ import annotations

import io
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from fractally import jobs
from fractally.jobs import pieces, rowparts, tasks
from fractally.picture.codec import decode_tile
from fractally.picture.compose import _colour_and_deflate, render_image
from fractally.errors import BadRequest
from fractally.jobs.invoke import plan_batches
from fractally.picture.spec import parse_spec
from fractally.store import ObjectStore
from fractally.picture.tiling import band, grid, render_tile_arrays, tile

# 7 rows of 5 tiles, the last row and column narrower than the rest
SPEC = {"fractal": "julia", "c": [-0.8, 0.156], "width": 70, "height": 100, "tile_size": 16, "max_iter": 80}


def _expected(spec_body: dict) -> bytes:
    out = io.BytesIO()
    with ThreadPoolExecutor(2) as pool:
        render_image(parse_spec(spec_body), out, pool)
    return out.getvalue()


def _run_job(store: ObjectStore, spec_body: dict, batches: list[tuple[int, int]]) -> dict:
    job, _ = jobs.create(store, parse_spec(spec_body))
    for first, end in batches:
        tasks.render(job.batch_task(first, end), store)
    return tasks.assemble(job.id, store)


def test_plan_cuts_whole_tile_rows_when_there_are_more_rows_than_batches() -> None:
    spec = parse_spec(SPEC)
    rows, cols = grid(spec)
    runs = plan_batches(spec, list(range(rows * cols)), target=3)
    assert all(first % cols == 0 and (end % cols == 0 or end == rows * cols) for first, end in runs)
    assert [i for first, end in runs for i in range(first, end)] == list(range(rows * cols))
    assert len(runs) <= 3


def test_plan_cuts_rows_in_parts_when_there_are_more_batches_than_rows() -> None:
    spec = parse_spec(SPEC)
    rows, cols = grid(spec)
    runs = plan_batches(spec, list(range(rows * cols)), target=20)
    assert all(first // cols == (end - 1) // cols for first, end in runs), "a part never spans two rows"
    assert [i for first, end in runs for i in range(first, end)] == list(range(rows * cols))
    assert rows < len(runs) <= 2 * 20


def test_plan_of_missing_tiles_keeps_the_cuts_of_the_whole_job() -> None:
    """A job sent again (say, after its replica died) makes the runs the first dispatch made, less what is stored."""
    spec = parse_spec(SPEC)
    everything = list(range(35))
    whole = plan_batches(spec, everything, target=7)
    missing = [i for i in everything if i not in (5, 6, 7, 8, 9)]
    again = plan_batches(spec, missing, target=7)
    assert set(again) <= set(whole) and (5, 10) not in again


def test_a_batch_is_one_pack_one_piece_for_its_whole_rows_and_a_part_of_each_other_row(local_store: ObjectStore) -> None:
    job, _ = jobs.create(local_store, parse_spec(SPEC))
    answer = tasks.render(job.batch_task(3, 12), local_store)  # tiles 3..11: row 1 whole (5..9), parts of 0 and 2
    keys = local_store.list("")
    assert [k for k in keys if k.startswith("tiles/")] == [jobs.pack_key(job.pixels_hash, 3, 12)]
    assert [k.split("/")[-1].split(".")[0] for k in keys if "/pieces/" in k] == ["0000001-0000002"]
    assert [k.split("/rowparts/")[1] for k in keys if "/rowparts/" in k] == [
        "0000000/0000003-0000005.rgb", "0000002/0000000-0000002.rgb"]
    assert (answer["count"], answer["bands"], answer["pieces"]) == (9, 1, 3)


def test_a_tile_in_a_pack_is_the_tile_a_single_task_stores(local_store: ObjectStore) -> None:
    spec = parse_spec(SPEC)
    job, _ = jobs.create(local_store, spec)
    tasks.render(job.batch_task(0, 10), local_store)
    from fractally.jobs.packs import TileReader

    counts, smooth = TileReader(local_store, job).read(7)
    want_counts, want_smooth = render_tile_arrays(spec, tile(spec, 7))
    assert (counts == want_counts).all() and (smooth.view("u4") == want_smooth.view("u4")).all()
    assert jobs.tiles_present(local_store, job) == set(range(10))


@pytest.mark.parametrize("fmt", ["png", "msgpack"])
@pytest.mark.parametrize("target", [1, 3, 7, 20])
def test_a_result_joined_from_batches_is_the_one_render_writes(store: ObjectStore, fmt: str, target: int) -> None:
    """One batch, whole-row batches, one row each, parts of rows (no pieces): the same bytes."""
    body = {**SPEC, "format": fmt}
    spec = parse_spec(body)
    answer = _run_job(store, body, plan_batches(spec, list(range(35)), target))
    assert answer["status"] == "done" and answer["written"] is True
    job = jobs.new_job(spec)
    assert store.get(job.result_key) == _expected(body)
    assert store.list(pieces.pieces_prefix(job.id)) == [], "the pieces are gone once joined"


def test_bands_without_a_piece_are_made_by_the_assembly(store: ObjectStore) -> None:
    """Rows 0-2 come as whole rows (pieces), rows 3-6 in parts (no pieces): joined and encoded alike."""
    batches = [(0, 15), *((i, i + 1) for i in range(15, 35))]
    answer = _run_job(store, SPEC, batches)
    assert answer["pieces"] == 1
    assert store.get(jobs.new_job(parse_spec(SPEC)).result_key) == _expected(SPEC)


def _store_rows(store: ObjectStore, job: jobs.Job, rows: list[int]) -> list[dict]:
    """Render tile rows one batch each, in the order given (5 tiles a row)."""
    return [tasks.render(job.batch_task(5 * r, min(5 * r + 5, 35)), store) for r in rows]


def _row_piece_sizes(store: ObjectStore, job: jobs.Job) -> list[int]:
    """Each row's own piece in bytes, stored with merging off."""
    store.join_part_minimum = 0
    _store_rows(store, job, list(range(7)))
    by_first, sizes = pieces.stored(store, job)
    return [pieces.size_of(by_first[r][0], sizes) for r in range(7)]


def test_small_pieces_are_merged_once_they_add_up_to_a_part_the_store_copies(store: ObjectStore) -> None:
    job, _ = jobs.create(store, parse_spec(SPEC))
    minimum = int(1.5 * max(_row_piece_sizes(store, jobs.new_job(parse_spec({**SPEC, "max_iter": 81})))))
    store.join_part_minimum = minimum
    answers = _store_rows(store, job, list(range(7)))
    by_first, sizes = pieces.stored(store, job)
    merged = [p for runs in by_first.values() for p in runs if p.end - p.first > 1]
    assert len(merged) >= 2 and sum(a["pieces"] for a in answers) == 7 + len(merged)
    assert all(pieces.size_of(p, sizes) >= minimum for p in merged)
    assert tasks.assemble(job.id, store)["pieces"] == len(pieces.cover(by_first, 7)[0]) < 7
    assert store.get(job.result_key) == _expected(SPEC)
    assert store.list(pieces.pieces_prefix(job.id)) == [], "merged and merging pieces alike are gone"


def test_the_piece_that_completes_a_run_merges_it(store: ObjectStore) -> None:
    """Rows 0, 2, then 1: row 2 alone is no run (row 1 is missing); row 1 joins all three."""
    job, _ = jobs.create(store, parse_spec(SPEC))
    s = _row_piece_sizes(store, jobs.new_job(parse_spec({**SPEC, "max_iter": 81})))
    store.join_part_minimum = s[0] + s[1] + s[2] - 1  # rows 0 and 1 alone fall short of it
    answers = _store_rows(store, job, [0, 2, 1])
    assert [a["pieces"] for a in answers] == [1, 1, 2]
    by_first, _ = pieces.stored(store, job)
    assert [p.end for p in by_first[0]] == [3, 1], "the merged piece and row 0's own"


def test_a_merged_msgpack_piece_joins_counts_and_smooth_apart(store: ObjectStore) -> None:
    body = {**SPEC, "format": "msgpack"}
    job, _ = jobs.create(store, parse_spec(body))
    store.join_part_minimum = 1  # every piece is big enough: nothing to merge
    assert [a["pieces"] for a in _store_rows(store, job, [0])] == [2]
    store.join_part_minimum = 70 * 16 * 4 + 1  # one row's counts (u4) fall short; two rows reach it
    assert [a["pieces"] for a in _store_rows(store, job, [1, 2, 3, 4, 5, 6])] == [2, 4, 2, 4, 2, 4]
    assert tasks.assemble(job.id, store)["status"] == "done"
    assert store.get(job.result_key) == _expected(body)


def test_a_row_made_from_its_parts_is_the_band_its_tiles_give(store: ObjectStore) -> None:
    job, _ = jobs.create(store, parse_spec(SPEC))
    for first, end in [(5, 7), (7, 8), (8, 10)]:  # row 1 in three parts
        tasks.render(job.batch_task(first, end), store)
    chain = rowparts.covering(store, job, 1)
    assert [c0 for c0, _ in chain] == [0, 2, 3]
    made = rowparts.deflated(store, job, 1, chain)
    expected = _colour_and_deflate(job.spec, [render_tile_arrays(job.spec, t) for t in band(job.spec, 1)])
    assert (made.data, made.adler, made.raw_len) == (expected.data, expected.adler, expected.raw_len)


def test_a_row_whose_parts_do_not_cover_it_is_made_from_its_tiles(store: ObjectStore) -> None:
    job, _ = jobs.create(store, parse_spec(SPEC))
    for first, end in [(0, 15), (15, 17), (17, 20), *((i, i + 1) for i in range(20, 35))]:  # rows 3-6 in parts
        tasks.render(job.batch_task(first, end), store)
    store.delete(f"{rowparts.rowparts_prefix(job.id, 3)}0000002-0000005.rgb")
    assert rowparts.covering(store, job, 3) is None
    assert tasks.assemble(job.id, store)["status"] == "done"
    assert store.get(job.result_key) == _expected(SPEC)


def test_a_job_whose_bands_are_in_pieces_and_row_parts_is_joined_without_listing_its_tiles(
        local_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gigapixel's tiles are thousands of packs: listing them would be most of the final assembly."""
    job, _ = jobs.create(local_store, parse_spec(SPEC))
    for first, end in [(0, 15), *((i, i + 2) for i in range(15, 35, 2))]:  # rows 3-6 in parts
        tasks.render(job.batch_task(first, min(end, 35)), local_store)
    listed: list[str] = []
    list_keys = local_store.list
    monkeypatch.setattr(local_store, "list", lambda prefix="": listed.append(prefix) or list_keys(prefix))
    assert tasks.assemble(job.id, local_store)["status"] == "done"
    assert local_store.get(job.result_key) == _expected(SPEC)
    assert listed and not [p for p in listed if p.startswith("tiles/")]


def test_row_parts_are_gone_once_the_result_is_written(store: ObjectStore) -> None:
    answer = _run_job(store, SPEC, [(i, i + 1) for i in range(35)])
    assert answer["status"] == "done"
    assert store.list(rowparts.rowparts_prefix(answer["job"])) == []


def test_a_msgpack_job_stores_no_row_parts(local_store: ObjectStore) -> None:
    job, _ = jobs.create(local_store, parse_spec({**SPEC, "format": "msgpack"}))
    tasks.render(job.batch_task(3, 12), local_store)
    assert local_store.list(rowparts.rowparts_prefix(job.id)) == []


def test_a_job_with_a_tile_missing_is_not_assembled(local_store: ObjectStore) -> None:
    answer = _run_job(local_store, SPEC, [(0, 34)])
    assert answer == {"job": answer["job"], "status": "incomplete", "missing": 1}


@pytest.mark.parametrize("task, field", [
    ({"first": 30, "count": 6}, "count"),
    ({"first": -1, "count": 2}, "count"),
    ({"first": 0, "count": 0}, "count"),
    ({"first": "0", "count": 2}, "first"),
    ({"first": 0, "count": True}, "count"),
])
def test_a_batch_outside_the_grid_is_refused_naming_the_field(local_store: ObjectStore, task: dict,
                                                              field: str) -> None:
    job, _ = jobs.create(local_store, parse_spec(SPEC))
    with pytest.raises(BadRequest) as err:
        tasks.render({"job": job.id, "spec": job.spec.normalized(), **task}, local_store)
    assert err.value.field == field
    assert local_store.list("tiles/") == []


def test_every_band_of_a_png_is_framed_in_idat_chunks_of_its_own() -> None:
    """What lets bands made by different processes join into the bytes one writer makes."""
    data = _expected(SPEC)
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append((kind, length))
        at += 12 + length
    idats = [length for kind, length in chunks if kind == b"IDAT"]
    rows, _ = grid(parse_spec(SPEC))
    assert len(idats) == rows + 1  # small bands: one chunk each, and the trailer's
    assert idats[-1] == 6  # the final empty block and the Adler-32


def test_a_pack_decodes_with_the_tile_decoder(local_store: ObjectStore) -> None:
    from fractally.jobs.packs import decode_pack

    job, _ = jobs.create(local_store, parse_spec(SPEC))
    tasks.render(job.batch_task(0, 2), local_store)
    first, tiles = decode_pack(local_store.get(jobs.pack_key(job.pixels_hash, 0, 2)))
    assert first == 0 and [decode_tile(t).counts.shape for t in tiles] == [(16, 16), (16, 16)]


def _http_job(served, spec_body: dict, batches: int) -> tuple[jobs.Job, bytes]:
    """The job sent by an HTTP invoker cut into ``batches`` calls to the served functions; its result."""
    from fractally.config import Settings
    from fractally.jobs.invoke import HttpInvoker

    settings = Settings(store_url=str(served.store.root), invoker="http", render_tile_url=served.render_tile,
                        assemble_url=served.assemble, http_concurrency=4, batches=batches)
    invoker = HttpInvoker(served.store, settings)
    try:
        job, _ = jobs.create(served.store, parse_spec(spec_body))
        assert invoker.dispatch(job, list(range(job.tiles_total)))
        assert invoker.wait_until_idle(timeout=60)
    finally:
        invoker.close()
    return job, served.store.get(job.result_key)


def test_http_invoker_makes_about_as_many_calls_as_batches_asked(served_functions) -> None:
    job, result = _http_job(served_functions, SPEC, batches=3)
    assert result == _expected(SPEC)
    tile_calls = served_functions.calls["render_tile"]
    assert 1 < len(tile_calls) <= 3 and sum(c["count"] for c in tile_calls) == job.tiles_total
    assert served_functions.calls["assemble"] == [{"job": job.id}], "whole rows: the pieces came with the tiles"


def test_rows_sent_in_parts_are_encoded_by_a_call_each_before_the_join(served_functions) -> None:
    """All but the row that completes last: the final assembly, which starts then, makes that one."""
    job, result = _http_job(served_functions, SPEC, batches=20)
    assert result == _expected(SPEC)
    rows, _ = grid(job.spec)
    assemble_calls = served_functions.calls["assemble"]
    banded = sorted(c["bands"][0] for c in assemble_calls[:-1])
    assert len(banded) == rows - 1 and set(banded) < set(range(rows))
    assert assemble_calls[-1] == {"job": job.id}, "the final assembly comes after every row's piece"


def test_a_band_call_outside_the_grid_is_a_400_naming_bands(served_functions, local_store) -> None:
    import requests

    job, _ = jobs.create(served_functions.store, parse_spec(SPEC))
    resp = requests.post(served_functions.assemble, json={"job": job.id, "bands": [3, 99]}, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "bands"
