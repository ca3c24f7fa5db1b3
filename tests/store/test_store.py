"""The object-store contract: one suite, run against a local folder and against S3 over HTTP.

Tests that only make sense for one backend say so in their name (``test_local_*``,
``test_s3_*``). S3 tests talk real HTTP to a moto server on 127.0.0.1 (``s3_server``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import pytest

from fractally.errors import InvalidKey, KeyNotFound, StoreUnavailable
from fractally.store import ObjectStore, check_key, open_store
from fractally.store.local import TMP_DIR, LocalStore
from tests.support.store import S3_TEST_CREDENTIALS

ALL_BYTES = bytes(range(256)) * 4 + b"\x00" * 100  # zeros and every byte value


def _backend(store: ObjectStore) -> str:
    return "local" if isinstance(store, LocalStore) else "s3"


# -- round trips -----------------------------------------------------------------------------


def test_put_then_get_returns_the_same_bytes(store: ObjectStore) -> None:
    store.put("jobs/j1/tiles/0-0.msgpack", ALL_BYTES)
    assert store.get("jobs/j1/tiles/0-0.msgpack") == ALL_BYTES


def test_put_of_empty_bytes_stores_an_empty_object(store: ObjectStore) -> None:
    store.put("empty", b"")
    assert store.get("empty") == b""


def test_put_overwrites_an_existing_object(store: ObjectStore) -> None:
    store.put("a/b", b"old")
    store.put("a/b", b"new")
    assert store.get("a/b") == b"new"


def test_get_of_a_missing_key_raises_key_not_found(store: ObjectStore) -> None:
    with pytest.raises(KeyNotFound):
        store.get("jobs/nothing-here")


def test_exists_is_true_only_for_stored_keys(store: ObjectStore) -> None:
    store.put("x/y", b"1")
    assert (store.exists("x/y"), store.exists("x/z"), store.exists("x")) == (True, False, False)


def test_longest_allowed_key_round_trips(store: ObjectStore) -> None:
    key = "a" * 255 + "/" + "b" * 254 + "/c"
    assert len(key) == 512
    store.put(key, b"long")
    assert store.get(key) == b"long"


def test_readers_never_see_a_partial_object(store: ObjectStore) -> None:
    """A reader racing 20 overwrites gets the old or the new object whole, never a mix or a short one.

    The reader's own failure (say, a read of a half-written object that raised) is re-raised here, and
    the writes only start once it reads, so the test cannot pass with a reader that never ran."""
    old, new = b"o" * 300_000, b"n" * 300_000
    store.put("big", old)
    seen: set[bytes] = set()
    reads_during_writes = 0
    writing = threading.Event()
    reading = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        nonlocal reads_during_writes
        try:
            while not stop.is_set():
                seen.add(store.get("big"))
                reads_during_writes += writing.is_set()
                reading.set()
        except BaseException as err:  # handed to the test's thread below
            errors.append(err)
            reading.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert reading.wait(30), "the reader never read"
        writing.set()
        for i in range(20):
            store.put("big", new if i % 2 == 0 else old)
        deadline = time.monotonic() + 30
        while reads_during_writes == 0 and reader.is_alive() and time.monotonic() < deadline:
            store.put("big", old)  # a reader slow to be scheduled: keep writing until it reads meanwhile
    finally:
        stop.set()
        reader.join(30)
    if errors:
        raise errors[0]
    assert reads_during_writes > 0
    assert seen <= {old, new}


# -- list --------------------------------------------------------------------------------------


def test_list_returns_sorted_keys_under_the_prefix(store: ObjectStore) -> None:
    for key in ["jobs/b/2", "jobs/a/x/deep", "other/1", "jobs/a/1", "jobsx", "jobs/b/10"]:
        store.put(key, b".")
    assert store.list("jobs/") == ["jobs/a/1", "jobs/a/x/deep", "jobs/b/10", "jobs/b/2"]


def test_list_prefix_is_a_plain_string_prefix(store: ObjectStore) -> None:
    for key in ["jobs/abc/1", "jobs/ab", "jobs/b/1"]:
        store.put(key, b".")
    assert store.list("jobs/ab") == ["jobs/ab", "jobs/abc/1"]


def test_list_of_empty_prefix_returns_every_key(store: ObjectStore) -> None:
    for key in ["z", "a/b/c", "m/n"]:
        store.put(key, b".")
    assert store.list("") == ["a/b/c", "m/n", "z"]


def test_list_of_unknown_prefix_is_empty(store: ObjectStore) -> None:
    store.put("a/b", b".")
    assert store.list("nope/") == []


def test_list_shows_only_stored_keys_after_all_kinds_of_writes(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"file")
    store.put("w/put", b"1")
    store.put_if_absent("w/pia", b"2")
    store.put_if_absent("w/pia", b"3")
    store.put_file("w/file", src)
    store.put_file("w/file", src, if_absent=True)
    assert store.list("") == ["w/file", "w/pia", "w/put"]


def test_local_list_skips_leftover_temp_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("k", b"1")
    (tmp_path / "s" / TMP_DIR / "put-crashed-midway").write_bytes(b"partial")
    assert store.list("") == ["k"]


def test_s3_list_follows_pagination(s3_store_factory) -> None:
    store = s3_store_factory()
    store.list_page_size = 2
    pages = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: pages.append(1))
    keys = [f"p/{i}" for i in range(5)]
    for key in keys:
        store.put(key, b".")
    assert (store.list("p/"), len(pages)) == (keys, 3)


def test_s3_store_prefix_keeps_stores_apart(s3_store_factory, s3_server: str) -> None:
    one = s3_store_factory(prefix="one")
    two = open_store(f"s3://{one.bucket}/two", endpoint_url=s3_server, **S3_TEST_CREDENTIALS)
    one.put("k", b"1")
    two.put("k", b"2")
    assert (one.list(""), one.get("k"), two.get("k")) == (["k"], b"1", b"2")


# -- put_if_absent -------------------------------------------------------------------------------


def test_put_if_absent_writes_when_nothing_is_there(store: ObjectStore) -> None:
    assert store.put_if_absent("r/result.png", b"first") is True
    assert store.get("r/result.png") == b"first"


def test_put_if_absent_keeps_the_existing_object(store: ObjectStore) -> None:
    store.put("r/result.png", b"first")
    assert store.put_if_absent("r/result.png", b"second") is False
    assert store.get("r/result.png") == b"first"


def test_put_if_absent_has_exactly_one_winner_among_8_threads(store: ObjectStore) -> None:
    barrier = threading.Barrier(8)
    results: dict[int, bool] = {}

    def race(i: int) -> None:
        barrier.wait()
        results[i] = store.put_if_absent("race/result", b"writer-%d" % i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(results) == 8 and len(winners) == 1
    assert store.get("race/result") == b"writer-%d" % winners[0]


# -- put_file ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twenty_mb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "result.bin"
    block = hashlib.sha256(b"fractally").digest() * 32768  # 1 MiB, not all zeros
    with open(path, "wb") as f:
        for i in range(20):
            f.write(bytes([i]) + block[1:])
    return path


def test_put_file_round_trips_a_20_mb_file(store: ObjectStore, twenty_mb_file: Path) -> None:
    assert store.put_file("results/big.bin", twenty_mb_file) is True
    got = store.get("results/big.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(twenty_mb_file.read_bytes()).digest()


def test_put_file_leaves_the_source_file_unchanged(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    store.put_file("f", src)
    assert src.read_bytes() == b"payload"


def test_put_file_if_absent_keeps_the_existing_object(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"second")
    store.put("f", b"first")
    assert store.put_file("f", src, if_absent=True) is False
    assert store.get("f") == b"first"


def test_put_file_if_absent_writes_when_nothing_is_there(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"only")
    assert store.put_file("f", src, if_absent=True) is True
    assert store.get("f") == b"only"


def test_local_put_file_copies_with_bounded_memory(tmp_path: Path, twenty_mb_file: Path) -> None:
    # In a fresh interpreter: tracemalloc counts every thread, and other tests' threads allocate.
    script = (
        "import sys, tracemalloc\n"
        "from fractally.store.local import LocalStore\n"
        "store = LocalStore(sys.argv[1])\n"
        "tracemalloc.start()\n"
        "store.put_file('big', sys.argv[2])\n"
        "print(tracemalloc.get_traced_memory()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s"), str(twenty_mb_file)],
                         capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) < 4 * 1024 * 1024
    assert (tmp_path / "s" / "big").stat().st_size == twenty_mb_file.stat().st_size


def test_s3_put_file_sends_parts_no_larger_than_part_size(s3_store_factory, twenty_mb_file: Path) -> None:
    store = s3_store_factory()
    sizes: list[int] = []

    def record_body_size(params: dict, **kwargs: object) -> None:
        if isinstance(params.get("Body"), bytes):  # a file handle streams; bytes sit in memory
            sizes.append(len(params["Body"]))

    store.client.meta.events.register("provide-client-params.s3.*", record_body_size)
    store.put_file("big", twenty_mb_file)
    assert sizes and max(sizes) <= store.part_size and sum(sizes) == twenty_mb_file.stat().st_size


def test_s3_multipart_put_file_if_absent_is_decided_by_the_server(
    s3_store_factory, twenty_mb_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A racing writer that lands after our HEAD: the conditional CompleteMultipartUpload refuses."""
    store = s3_store_factory()
    store.put("big", b"the other writer won")
    monkeypatch.setattr(store, "_head", lambda name: False)  # as if we looked before it landed
    assert store.put_file("big", twenty_mb_file, if_absent=True) is False
    assert store.get("big") == b"the other writer won"
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_s3_put_keeps_the_content_type(s3_store_factory, tmp_path: Path) -> None:
    store = s3_store_factory()
    src = tmp_path / "r.png"
    src.write_bytes(b"\x89PNG")
    store.put("a.png", b"\x89PNG", content_type="image/png")
    store.put_file("b.png", src, content_type="image/png")
    types = [store.client.head_object(Bucket=store.bucket, Key=store.prefix + k)["ContentType"]
             for k in ("a.png", "b.png")]
    assert types == ["image/png", "image/png"]


# -- delete ----------------------------------------------------------------------------------------


def test_delete_removes_the_object(store: ObjectStore) -> None:
    store.put("d/x", b"1")
    store.delete("d/x")
    assert (store.exists("d/x"), store.list("d/")) == (False, [])


def test_delete_of_a_missing_key_is_not_an_error(store: ObjectStore) -> None:
    store.delete("never/was")
    assert store.list("") == []


def test_key_can_be_reused_after_the_keys_under_it_are_deleted(store: ObjectStore) -> None:
    store.put("a/b/c", b"1")
    store.delete("a/b/c")
    store.put("a", b"2")
    assert store.list("") == ["a"]


def test_local_key_and_folder_of_the_same_name_clash(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a", b"1")
    with pytest.raises(InvalidKey):
        store.put("a/b", b"2")
    assert store.list("") == ["a"]


def test_local_key_clash_is_found_in_a_folder_the_store_made_before(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a/b", b"1")  # the store makes (and remembers) the folder a
    store.delete("a/b")  # which prunes it
    store.put("a", b"2")
    with pytest.raises(InvalidKey):
        store.put("a/c", b"3")
    assert store.list("") == ["a"]


#: Both ways of writing bytes to a key (``write(store, key)`` writes b"2").
each_write = pytest.mark.parametrize("write", [
    lambda s, k: s.put(k, b"2"),
    lambda s, k: s.put_if_absent(k, b"2"),
], ids=["put", "put_if_absent"])


@each_write
def test_local_put_after_its_folder_was_removed_behind_the_stores_back_still_succeeds(tmp_path: Path, write) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("tiles/h/1.tile", b"1")
    shutil.rmtree(tmp_path / "s" / "tiles")
    write(store, "tiles/h/2.tile")
    assert store.list("") == ["tiles/h/2.tile"]
    assert store.get("tiles/h/2.tile") == b"2"


def test_local_objects_are_readable_by_everyone_whatever_the_umask(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"3")
    store = LocalStore(tmp_path / "s")
    old = os.umask(0o077)
    try:
        store.put("m/put", b"1")
        store.put_if_absent("m/pia", b"2")
        store.put_file("m/file", src)
    finally:
        os.umask(old)
    modes = {key: (tmp_path / "s" / key).stat().st_mode & 0o777 for key in store.list("")}
    assert modes == {"m/file": 0o644, "m/pia": 0o644, "m/put": 0o644}


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"file")
    store = LocalStore(tmp_path / "s")
    store.put("w/put", b"1")
    store.put("w/put", b"2")
    store.put_if_absent("w/pia", b"3")
    store.put_if_absent("w/pia", b"4")
    store.put_file("w/file", src)
    store.put_file("w/file", src, if_absent=True)
    assert os.listdir(tmp_path / "s" / TMP_DIR) == []


@each_write
def test_local_write_that_fails_leaves_no_temp_file(tmp_path: Path, write) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("a", b"1")
    with pytest.raises(InvalidKey):
        write(store, "a/b")  # clashes with the key a
    assert os.listdir(tmp_path / "s" / TMP_DIR) == []


# -- keys --------------------------------------------------------------------------------------------

BAD_KEYS = {
    "parent": "../x",
    "inner-parent": "a/../../x",
    "dot": "a/./b",
    "absolute": "/abs",
    "double-slash": "a//b",
    "trailing-slash": "a/",
    "nul": "a\x00b",
    "unicode": "café",
    "space": "a b",
    "backslash": "a\\b",
    "empty": "",
    "too-long": "a" * 200 + "/" + "b" * 200 + "/" + "c" * 200,
    "segment-too-long": "a" * 256,
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_invalid_key_is_rejected_and_nothing_is_written(store: ObjectStore, key: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    assert store.list("") == []
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("call", [
    lambda s, k: s.get(k),
    lambda s, k: s.exists(k),
    lambda s, k: s.delete(k),
    lambda s, k: s.url(k),
    lambda s, k: s.put_if_absent(k, b"x"),
    lambda s, k: s.put_file(k, __file__),
], ids=["get", "exists", "delete", "url", "put_if_absent", "put_file"])
def test_invalid_key_is_rejected_by_every_method(store: ObjectStore, call) -> None:
    with pytest.raises(InvalidKey):
        call(store, "../escape")


@pytest.mark.parametrize("key", ["..a", "a..", "...", ".a/b.", "a/.../b", "_-./x"])
def test_dots_inside_a_segment_are_allowed(key: str) -> None:
    assert check_key(key) == key


def test_invalid_key_message_says_what_is_allowed(store: ObjectStore) -> None:
    with pytest.raises(InvalidKey, match=r"A-Z a-z 0-9 \. _ - and /"):
        store.put("bad key", b"x")


def test_local_key_cannot_escape_the_root_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalStore(tmp_path / "s")
    (tmp_path / "s" / "evil").symlink_to(outside)
    with pytest.raises(InvalidKey):
        store.put("evil/x", b"x")
    assert list(outside.iterdir()) == []


def test_local_key_cannot_read_through_a_symlinked_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the store")
    store = LocalStore(tmp_path / "s")
    store.put("a/x", b"x")  # the folder is checked (and remembered) before the file appears
    (tmp_path / "s" / "a" / "leak").symlink_to(secret)
    with pytest.raises(InvalidKey):
        store.get("a/leak")


# -- URLs ----------------------------------------------------------------------------------------------


def test_local_url_is_a_readable_file_url(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.put("r/out.png", ALL_BYTES)
    url = store.url("r/out.png")
    assert url.startswith("file:///")
    with urllib.request.urlopen(url) as response:
        assert response.read() == ALL_BYTES


def test_s3_presigned_url_serves_the_bytes_over_http(s3_store_factory) -> None:
    requests = pytest.importorskip("requests")
    store = s3_store_factory()
    store.put("r/out.png", ALL_BYTES, content_type="image/png")
    response = requests.get(store.url("r/out.png", expires=60), timeout=10)
    assert (response.status_code, response.content, response.headers["Content-Type"]) == (
        200, ALL_BYTES, "image/png")


def presigned_url_is_valid(url: str, secret: str, now: datetime) -> bool:
    """Check a SigV4 presigned GET URL the way S3 does: signature over host, path and query,
    and not past X-Amz-Date + X-Amz-Expires.

    moto 5.2.5 serves presigned URLs without checking their signature or expiry (verified:
    an expired or tampered URL still returns 200), so the tests check them here instead.
    """
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = params.pop("X-Amz-Signature")
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    if now > signed_at + timedelta(seconds=int(params["X-Amz-Expires"])):
        return False
    if params["X-Amz-SignedHeaders"] != "host":
        return False
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", parts.path, query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"])
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for piece in scope.split("/"):
        key = hmac.new(key, piece.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def test_s3_presigned_url_carries_a_valid_signature(s3_store_factory) -> None:
    store = s3_store_factory()
    assert presigned_url_is_valid(store.url("r/out.png"), S3_TEST_CREDENTIALS["secret_key"], _now())


def test_s3_presigned_url_for_one_key_cannot_be_turned_into_another(s3_store_factory) -> None:
    store = s3_store_factory()
    url = store.url("jobs/j1/result.png")
    tampered = url.replace("/jobs/j1/", "/jobs/j2/")
    assert tampered != url
    assert not presigned_url_is_valid(tampered, S3_TEST_CREDENTIALS["secret_key"], _now())


def test_s3_presigned_url_expiry_cannot_be_extended(s3_store_factory) -> None:
    store = s3_store_factory()
    parts = urlsplit(store.url("r/out.png", expires=60))
    longer = urlunsplit(parts._replace(query=parts.query.replace("X-Amz-Expires=60", "X-Amz-Expires=604800")))
    assert not presigned_url_is_valid(longer, S3_TEST_CREDENTIALS["secret_key"], _now())


def test_s3_presigned_url_expires_after_the_requested_seconds(s3_store_factory) -> None:
    store = s3_store_factory()
    url = store.url("r/out.png", expires=60)
    secret = S3_TEST_CREDENTIALS["secret_key"]
    valid = [presigned_url_is_valid(url, secret, _now() + timedelta(seconds=s)) for s in (50, 70)]
    assert valid == [True, False]


def test_s3_presigned_url_uses_the_public_endpoint(s3_store_factory) -> None:
    store = s3_store_factory(public_endpoint_url="https://files.example.test")
    url = store.url("r/out.png")
    assert urlsplit(url).netloc == "files.example.test"
    assert presigned_url_is_valid(url, S3_TEST_CREDENTIALS["secret_key"], _now())


@pytest.mark.parametrize("expires", [0, -1, 604801, 1.5])
def test_url_rejects_an_impossible_expiry(store: ObjectStore, expires) -> None:
    with pytest.raises(ValueError):
        store.url("k", expires=expires)


# -- S3 failures -----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_store(aws_isolated: None):
    from fractally.store.s3 import S3Store

    return S3Store("dead-bucket", endpoint_url=f"http://127.0.0.1:{_closed_port()}",
                   connect_timeout=0.5, read_timeout=0.5, max_attempts=1, **S3_TEST_CREDENTIALS)


STORE_CALLS = {
    "put": lambda s: s.put("k", b"x"),
    "put_if_absent": lambda s: s.put_if_absent("k", b"x"),
    "put_file": lambda s: s.put_file("k", __file__),
    "get": lambda s: s.get("k"),
    "exists": lambda s: s.exists("k"),
    "list": lambda s: s.list(""),
    "delete": lambda s: s.delete("k"),
}


@pytest.mark.parametrize("call", STORE_CALLS.values(), ids=STORE_CALLS.keys())
def test_s3_dead_endpoint_raises_store_unavailable(dead_store, call) -> None:
    with pytest.raises(StoreUnavailable):
        call(dead_store)


@pytest.fixture
def misbehaving_server() -> Iterator[dict]:
    """A raw TCP server on 127.0.0.1: "500" answers every request with HTTP 500, "hang"
    accepts and never answers."""
    mode = {"mode": "500"}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    conns = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conns.append(conn)
            if mode["mode"] == "500":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    mode["url"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield mode
    sock.close()
    for conn in conns:
        conn.close()


def test_s3_server_error_raises_store_unavailable(misbehaving_server, aws_isolated) -> None:
    from fractally.store.s3 import S3Store

    store = S3Store("some-bucket", endpoint_url=misbehaving_server["url"], max_attempts=1,
                    **S3_TEST_CREDENTIALS)
    with pytest.raises(StoreUnavailable):
        store.get("k")


def test_s3_unanswered_request_times_out_as_store_unavailable(misbehaving_server, aws_isolated) -> None:
    from fractally.store.s3 import S3Store

    misbehaving_server["mode"] = "hang"
    store = S3Store("some-bucket", endpoint_url=misbehaving_server["url"], read_timeout=0.3,
                    max_attempts=1, **S3_TEST_CREDENTIALS)
    with pytest.raises(StoreUnavailable):
        store.get("k")


def test_s3_missing_bucket_raises_store_unavailable(s3_server: str, aws_isolated: None) -> None:
    store = open_store("s3://no-such-bucket-here/p", endpoint_url=s3_server, **S3_TEST_CREDENTIALS)
    with pytest.raises(StoreUnavailable):
        store.get("k")


# -- open_store ----------------------------------------------------------------------------------------


def test_open_store_file_url_creates_the_folder(tmp_path: Path) -> None:
    store = open_store((tmp_path / "new" / "store").as_uri())
    assert (tmp_path / "new" / "store").is_dir()
    assert store.describe() == (tmp_path / "new" / "store").as_uri()


def test_open_store_plain_path_is_a_local_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "plain"))
    store.put("k", b"1")
    assert (tmp_path / "plain" / "k").read_bytes() == b"1"


def test_open_store_s3_url_names_bucket_and_prefix(aws_isolated: None) -> None:
    store = open_store("s3://my-bucket/some/prefix/", endpoint_url="http://minio:9000")
    assert store.describe() == "s3://my-bucket/some/prefix/ at http://minio:9000"


@pytest.mark.parametrize("url", ["", "s3://", "ftp://host/x", "file://otherhost/x", "s3://Bad_Bucket/x"])
def test_open_store_rejects_unusable_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_opening_a_local_store_does_not_import_an_s3_sdk(tmp_path: Path) -> None:
    code = (
        "import sys; from fractally.store import open_store; "
        f"s = open_store({str(tmp_path)!r}); s.put('k', b'1'); s.get('k'); "
        "print(sorted(m for m in ('boto3', 'botocore', 'minio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.stdout.strip() == "[]"


def test_opening_an_s3_store_makes_no_request(aws_isolated: None) -> None:
    store = open_store("s3://any-bucket/p", endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    assert store.describe().startswith("s3://any-bucket/p/")
