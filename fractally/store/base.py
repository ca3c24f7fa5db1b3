"""The object-store interface every backend implements, and the one place keys are validated.

All state of a job lives in the store (docs/architecture.md, principle 1), so this interface is small on
purpose: whole-object writes that readers never see half-done, one atomic "create if absent" for
idempotent work, file uploads with bounded memory for large results, and URLs to hand to clients.
"""

from __future__ import annotations

import abc
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Union

from fractally.errors import InvalidKey

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 255  # a file name's limit on every common filesystem
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: A part of ``ObjectStore.join``: an object's key, bytes, or a callable that gives bytes still being made.
JoinPart = Union[str, bytes, Callable[[], bytes]]

_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]*")
_SEGMENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9._-]{1,255}"  # not "." or "..", at most 255 characters
_VALID_KEY = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")  # every rule of check_key but the length
_KEY_RULES = (
    "keys are 1-512 characters of A-Z a-z 0-9 . _ - and /, with no leading '/' "
    "and no empty, '.' or '..' segment, each segment at most 255 characters"
)


def check_key(key: object) -> str:
    """Return ``key`` if it is a safe object key, else raise ``InvalidKey``.

    The same key must name the same object on every backend and must never leave a local
    store's root, so the alphabet is small: ``[A-Za-z0-9._/-]``, at most 512 characters,
    no leading ``/``, and no empty (``a//b``, trailing ``/``), ``.`` or ``..`` segment
    (a folder would collapse those; S3 would not). Segments are file names in a local
    store, so each is at most 255 characters there and, for sameness, everywhere.
    """
    if type(key) is str and len(key) <= MAX_KEY_LENGTH and _VALID_KEY.fullmatch(key):
        return key  # the common case in one match: 0.3 us, a quarter of the checks below (which say why)
    if not isinstance(key, str):
        raise InvalidKey(f"object key must be a string, got {type(key).__name__}; {_KEY_RULES}")
    if not key:
        raise InvalidKey(f"object key is empty; {_KEY_RULES}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"object key is {len(key)} characters long; {_KEY_RULES}")
    if not _KEY_CHARS.fullmatch(key):
        raise InvalidKey(f"object key {key[:80]!r} has a character that is not allowed; {_KEY_RULES}")
    if key.startswith("/"):
        raise InvalidKey(f"object key {key[:80]!r} starts with '/'; {_KEY_RULES}")
    segments = key.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise InvalidKey(f"object key {key[:80]!r} has an empty, '.' or '..' segment; {_KEY_RULES}")
    if any(len(seg) > MAX_SEGMENT_LENGTH for seg in segments):
        raise InvalidKey(f"object key {key[:80]!r} has a segment over 255 characters; {_KEY_RULES}")
    return key


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can start a valid key (``""`` lists everything), else raise.

    A prefix is matched as a plain string, as S3 does: ``"jobs/ab"`` matches ``"jobs/abc/x"``.
    It may end in ``/``; otherwise it follows the key rules.
    """
    if prefix == "":
        return ""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a string, got {type(prefix).__name__}")
    check_key(prefix[:-1] if prefix.endswith("/") and len(prefix) > 1 else prefix)
    return prefix


def is_valid_key(name: str) -> bool:
    """True if ``name`` passes ``check_key``; listings skip stray names that are not keys."""
    try:
        check_key(name)
    except InvalidKey:
        return False
    return True


MAX_URL_EXPIRY = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live


def check_expires(expires: object) -> int:
    """Seconds a URL stays valid: an int from 1 to 604800 (7 days, the SigV4 maximum)."""
    if isinstance(expires, bool) or not isinstance(expires, int) or not 1 <= expires <= MAX_URL_EXPIRY:
        raise ValueError(f"expires must be an integer number of seconds from 1 to {MAX_URL_EXPIRY}")
    return expires


class ObjectStore(abc.ABC):
    """A flat namespace of immutable-looking byte objects addressed by ``check_key`` keys.

    Every method validates its key first (``InvalidKey``, nothing touched). Backends raise
    ``KeyNotFound`` for a missing object and ``StoreUnavailable`` when the store cannot be
    reached, so callers can retry or answer 503 without knowing which backend is in use.
    """

    #: ``join`` copies an object where it is only if it holds at least this many bytes (S3's part
    #: minimum); smaller ones pass through the joining process. 0: any object joins where it is.
    join_part_minimum: int = 0

    @abc.abstractmethod
    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store ``data`` under ``key``, replacing any object there.

        Atomic: a concurrent reader sees the old object or the new one, never a partial one.
        """

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> bool:
        """Store ``data`` only if nothing is at ``key``; True if this call wrote it.

        Atomic even under concurrent callers: of many racing calls exactly one returns True,
        and the object is never replaced. This is how "two assembles of one job produce one
        result" is enforced.
        """

    @abc.abstractmethod
    def put_file(
        self,
        key: str,
        path: str | Path,
        content_type: str = DEFAULT_CONTENT_TYPE,
        if_absent: bool = False,
    ) -> bool:
        """Upload the file at ``path`` without reading it whole into memory; True if written.

        For results of up to ~1 GB. The source file is left in place, unchanged. With
        ``if_absent`` it behaves like ``put_if_absent`` (False and nothing replaced if an
        object is already there); without it, it always writes and returns True.
        """

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object at ``key``; ``KeyNotFound`` if there is none."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True if an object is stored at ``key``."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key that starts with ``prefix`` (a plain string prefix), sorted."""

    def list_sizes(self, prefix: str = "") -> dict[str, int]:
        """``list`` with each object's size in bytes (a backend that has them from its listing says so)."""
        return {key: len(self.get(key)) for key in self.list(prefix)}

    def join(self, key: str, parts: Sequence[JoinPart], *, sizes: dict[str, int] | None = None,
             content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False) -> bool:
        """Store ``parts`` one after another as one object at ``key``: a ``str`` is the key of an object
        to copy, ``bytes`` are bytes to write, and a callable gives bytes still being made, called when
        the join needs them (so a backend can copy the parts before it while they are made). True if
        written (``if_absent`` as in ``put_file``).

        How band-parallel assembly makes one file from pieces made elsewhere. This default goes
        through a temporary file (memory: one part at a time); a backend that can join objects where
        they are (S3: multipart upload with UploadPartCopy) overrides it. ``sizes``: the objects' sizes
        when the caller has them from a listing (``list_sizes``), which such a backend uses to plan.
        """
        scratch = getattr(self, "scratch_dir", None) or tempfile.gettempdir()
        fd, tmp = tempfile.mkstemp(prefix="fractally-join-", dir=scratch)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    out.write(part if isinstance(part, bytes) else self.get(part) if isinstance(part, str) else part())
            return self.put_file(key, tmp, content_type, if_absent=if_absent)
        finally:
            Path(tmp).unlink(missing_ok=True)

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key``; no error if there is none (deleting is idempotent)."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """``delete`` each key; a backend with a batch delete (S3: 1,000 keys a request) overrides it."""
        for key in keys:
            self.delete(key)

    def prepare(self) -> None:
        """Do ahead of the first request what it would otherwise pay for (S3: build the SDK client).

        A function calls it on a thread of its own as it starts, so that this overlaps its other
        start-up work; nothing to do by default."""

    @abc.abstractmethod
    def url(self, key: str, expires: int = 3600) -> str:
        """A URL a client can GET the object from, valid for ``expires`` seconds where the
        backend can enforce it. Does not check that the object exists."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects live, e.g. ``file:///srv/fractally`` or ``s3://bucket/prefix``.

        For logs and the README; never contains credentials.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
