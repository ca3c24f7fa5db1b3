"""The embedded default store: objects are files under one root folder.

A key ``a/b/c`` is the file ``<root>/a/b/c``. Every write goes to a temporary file in
``<root>/~tmp/`` (same filesystem) and is then renamed or hard-linked into place, so readers
never see a partial object and two racing ``put_if_absent`` calls cannot both win. ``~`` is not a
key character, so no key can name the temp folder and ``list`` never shows temp files.

Writes are not fsynced: a tile or result lost in a power cut is re-rendered, which is cheaper
than an fsync per tile. One limit S3 does not have: a folder cannot hold both a key ``a`` and
keys under ``a/``; such a write raises ``InvalidKey``. Content types are not stored.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from fractally.errors import InvalidKey, KeyNotFound
from fractally.store.base import (
    DEFAULT_CONTENT_TYPE,
    ObjectStore,
    check_expires,
    check_key,
    check_prefix,
    is_valid_key,
)

TMP_DIR = "~tmp"
_FILE_MODE = 0o644
_PLACE_ATTEMPTS = 5


_SAFE_PARENTS = 4096  # remembered folders (one or two per job); forgotten all at once when full


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self._safe_parents: set[str] = set()  # key prefixes whose folder resolved inside root
        self._tmp = self.root / TMP_DIR
        self._tmp.mkdir(parents=True, exist_ok=True)

    # -- paths -----------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file for ``key``, checked so a symlink in the store cannot lead out of it.

        ``check_key`` already rules out ``..``; what is left is a symlink planted in the folder.
        Resolving every path cost ~30 us of pathlib per call (a job's tiles call this hundreds
        of times), so each parent folder is resolved once and remembered (its tiles share it),
        and the file itself is checked with one ``lstat``.
        """
        check_key(key)
        parent, _, _ = key.rpartition("/")
        if parent not in self._safe_parents:
            if not (self.root / parent).resolve().is_relative_to(self.root):
                raise InvalidKey(f"object key {key!r} leads outside the store")
            if len(self._safe_parents) >= _SAFE_PARENTS:
                self._safe_parents.clear()
            self._safe_parents.add(parent)
        path = self.root / key
        if path.is_symlink():
            raise InvalidKey(f"object key {key!r} is a symlink in the store")
        return path

    def _conflict(self, key: str) -> InvalidKey:
        return InvalidKey(
            f"object key {key!r} clashes with an existing key that is a prefix of it or has it "
            "as a prefix (a local store cannot hold both 'a' and 'a/b')"
        )

    # -- writing ---------------------------------------------------------------------------

    def _temp_from(self, fill: Callable[[BinaryIO], None]) -> Path:
        """A new file in the temp folder written by ``fill``; removed again if ``fill`` fails."""
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        tmp = Path(name)
        try:
            os.fchmod(fd, _FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                fill(f)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _place(self, key: str, path: Path, tmp: Path, exclusive: bool) -> bool:
        """Move ``tmp`` to ``path``: ``os.replace`` (last writer wins) or, if ``exclusive``,
        ``os.link``, which fails when the name exists, so exactly one racing writer wins."""
        try:
            for _ in range(_PLACE_ATTEMPTS):
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise self._conflict(key) from None
                try:
                    if exclusive:
                        os.link(tmp, path)
                    else:
                        os.replace(tmp, path)
                    return True
                except FileExistsError:
                    if path.is_dir():
                        raise self._conflict(key) from None
                    return False
                except (IsADirectoryError, NotADirectoryError):
                    raise self._conflict(key) from None
                except FileNotFoundError:
                    continue  # a concurrent delete pruned the empty parent folder: make it again
            raise OSError(f"could not place object {key!r}: its folder keeps disappearing")
        finally:
            tmp.unlink(missing_ok=True)

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        path = self._path(key)
        data = bytes(data)
        self._place(key, path, self._temp_from(lambda f: f.write(data)), exclusive=False)

    def put_if_absent(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> bool:
        path = self._path(key)
        data = bytes(data)
        if path.is_file():
            return False  # cheap early answer; the hard link below is what decides a race
        return self._place(key, path, self._temp_from(lambda f: f.write(data)), exclusive=True)

    @property
    def scratch_dir(self) -> Path:
        """A folder for files that are about to become objects (same filesystem as the store):
        ``put_file`` moves a file from here into place instead of copying it. Assemble writes
        its result here, which saves a copy of the whole image."""
        return self._tmp

    def put_file(
        self,
        key: str,
        path: str | Path,
        content_type: str = DEFAULT_CONTENT_TYPE,
        if_absent: bool = False,
    ) -> bool:
        """Copy the file in (streamed; the kernel's copy path where it has one).

        Copied, not linked or moved: a hard link would make the stored object change if the
        caller later rewrote its file, and a move would take the caller's file away. The
        exception is a file in ``scratch_dir``, which the caller wrote for the store: it is
        moved (renamed or hard-linked, then unlinked), so it is gone afterwards either way.
        """
        target = self._path(key)
        if Path(path).parent == self._tmp:
            if if_absent and target.is_file():
                Path(path).unlink(missing_ok=True)
                return False
            os.chmod(path, _FILE_MODE)
            return self._place(key, target, Path(path), exclusive=if_absent)
        if if_absent and target.is_file():
            return False
        with open(path, "rb") as src:
            tmp = self._temp_from(lambda f: shutil.copyfileobj(src, f, 1024 * 1024))
        return self._place(key, target, tmp, exclusive=if_absent)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyNotFound(f"no object at key {key!r}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        top = self.root.joinpath(*folder.split("/")) if folder else self.root
        keys = []
        for dirpath, dirnames, filenames in os.walk(top):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            rel = "" if rel == "." else rel + "/"
            # descend only into folders that can hold matching keys; never into the temp folder
            dirnames[:] = [
                d for d in dirnames
                if not (rel == "" and d == TMP_DIR)
                and ((rel + d + "/").startswith(prefix) or prefix.startswith(rel + d + "/"))
            ]
            keys.extend(k for k in (rel + f for f in filenames) if k.startswith(prefix) and is_valid_key(k))
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return  # only keys under ``key/`` exist; there is no object at ``key``
        for parent in path.parents:  # prune empty folders so 'a' can later be a key again
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def url(self, key: str, expires: int = 3600) -> str:
        """A ``file://`` URL of the object's absolute path; it does not expire."""
        check_expires(expires)
        return self._path(key).as_uri()

    def describe(self) -> str:
        return self.root.as_uri()

