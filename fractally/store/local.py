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

import itertools
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from fractally.errors import InvalidKey, KeyNotFound
from fractally.store.fileio import WRITE_PIECE, write_all
from fractally.store.orphans import remove_orphans, temp_prefix
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
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_temp_names = itertools.count()  # next() on a count is atomic: no lock needed between threads
_PUT_TEMP = "put-"


_SAFE_PARENTS = 4096  # remembered folders (one or two per job); forgotten all at once when full


def _remember(folders: set[str], folder: str) -> None:
    if len(folders) >= _SAFE_PARENTS:
        folders.clear()
    folders.add(folder)


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (created if missing).

    A tile is written and checked in tens of microseconds of Python holding the GIL, which the
    request threads wait for, so the per-object paths are plain ``str`` and ``os`` calls (pathlib
    cost several microseconds per join or check) and folders known to exist are not made again.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self._root = os.path.join(self.root, "")  # "<root>/": a key appended is its file
        self._safe_parents: set[str] = set()  # key prefixes whose folder resolved inside root
        self._made_parents: set[str] = set()  # key prefixes whose folder this store made (it may be gone)
        self._tmp = self.root / TMP_DIR
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._tmp_slash = os.path.join(self._tmp, "")
        remove_orphans(self._tmp, _PUT_TEMP)  # a writer killed mid-put left its file behind

    # -- paths -----------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        """The file for ``key``, its folder checked so a symlink in the store cannot lead out of it.

        ``check_key`` already rules out ``..``; what is left is a symlink planted in the folder.
        Resolving every path cost ~30 us of pathlib per call (a job's tiles call this hundreds
        of times), so each parent folder is resolved once and remembered (its tiles share it).
        The file itself is checked by ``_leaf``.
        """
        check_key(key)
        parent = key.rpartition("/")[0]
        if parent not in self._safe_parents:
            if not (self.root / parent).resolve().is_relative_to(self.root):
                raise InvalidKey(f"object key {key!r} leads outside the store")
            _remember(self._safe_parents, parent)
        return self._root + key

    def _leaf(self, key: str) -> tuple[str, os.stat_result | None]:
        """``_path`` and what is there now (its ``lstat``, None if nothing); a symlink is refused."""
        path = self._path(key)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return path, None
        if stat.S_ISLNK(st.st_mode):
            raise InvalidKey(f"object key {key!r} is a symlink in the store")
        return path, st

    def _conflict(self, key: str) -> InvalidKey:
        return InvalidKey(
            f"object key {key!r} clashes with an existing key that is a prefix of it or has it "
            "as a prefix (a local store cannot hold both 'a' and 'a/b')"
        )

    # -- writing ---------------------------------------------------------------------------

    def _temp_from(self, fill: Callable[[int], None]) -> str:
        """A new file in the temp folder written by ``fill(fd)``; removed again if ``fill`` fails.

        Named by the process (pid, host, run) and a counter (``tempfile.mkstemp`` spent ~5 us of Python
        on a random name and a Path), so the next store opened here removes it if its writer died
        (``fractally.store.orphans``); ``O_EXCL`` still refuses a name that is taken, and the next is tried.
        """
        for _ in range(_PLACE_ATTEMPTS):
            name = f"{self._tmp_slash}{temp_prefix(_PUT_TEMP)}{next(_temp_names)}"
            try:
                fd = os.open(name, _TEMP_FLAGS, _FILE_MODE)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free temporary file name in {self._tmp}")
        try:
            try:
                os.fchmod(fd, _FILE_MODE)  # os.open's mode is masked by the umask; objects are 0o644
                fill(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink(name)
            raise
        return name

    def _place(self, key: str, path: str, tmp: str, exclusive: bool) -> bool:
        """Move ``tmp`` to ``path``: ``os.replace`` (last writer wins) or, if ``exclusive``,
        ``os.link``, which fails when the name exists, so exactly one racing writer wins.

        The folder is made only if this store has not made or seen it yet; if it has gone since
        (a delete pruned it, or someone removed it), the move fails and it is made again.
        """
        parent = key.rpartition("/")[0]
        moved = False
        try:
            for _ in range(_PLACE_ATTEMPTS):
                if parent not in self._made_parents:
                    try:
                        os.makedirs(self._root + parent, exist_ok=True)
                    except (FileExistsError, NotADirectoryError):
                        raise self._conflict(key) from None
                    _remember(self._made_parents, parent)
                try:
                    if exclusive:
                        os.link(tmp, path)
                    else:
                        os.replace(tmp, path)
                        moved = True
                    return True
                except FileExistsError:
                    if os.path.isdir(path):
                        raise self._conflict(key) from None
                    return False
                except (IsADirectoryError, NotADirectoryError):
                    raise self._conflict(key) from None
                except FileNotFoundError:
                    self._made_parents.discard(parent)  # the folder was removed: make it again
            raise OSError(f"could not place object {key!r}: its folder keeps disappearing")
        finally:
            if not moved:
                _unlink(tmp)

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        path, _ = self._leaf(key)
        data = bytes(data)
        self._place(key, path, self._temp_from(lambda fd: write_all(fd, data)), exclusive=False)

    def put_if_absent(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> bool:
        path, there = self._leaf(key)
        data = bytes(data)
        if _is_object(there):
            return False  # cheap early answer; the hard link below is what decides a race
        return self._place(key, path, self._temp_from(lambda fd: write_all(fd, data)), exclusive=True)

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
        target, there = self._leaf(key)
        present = _is_object(there)
        if Path(path).parent == self._tmp:
            if if_absent and present:
                _unlink(path)
                return False
            os.chmod(path, _FILE_MODE)
            return self._place(key, target, os.fspath(path), exclusive=if_absent)
        if if_absent and present:
            return False
        with open(path, "rb") as src:
            tmp = self._temp_from(lambda fd: _copy_into(fd, src))
        return self._place(key, target, tmp, exclusive=if_absent)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        path, there = self._leaf(key)
        if _is_object(there):
            try:
                with open(path, "rb", buffering=0) as f:
                    return f.readall()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                pass  # it went (or became a folder) since the lstat
        raise KeyNotFound(f"no object at key {key!r}")

    def exists(self, key: str) -> bool:
        return _is_object(self._leaf(key)[1])

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

    def list_sizes(self, prefix: str = "") -> dict[str, int]:
        sizes = {}
        for key in self.list(prefix):
            try:
                sizes[key] = os.stat(self._path(key)).st_size
            except FileNotFoundError:
                continue  # deleted since the listing
        return sizes

    def delete(self, key: str) -> None:
        path, _ = self._leaf(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            return  # only keys under ``key/`` exist; there is no object at ``key``
        folder = key
        while "/" in folder:  # prune empty folders so 'a' can later be a key again
            folder = folder.rpartition("/")[0]
            try:
                os.rmdir(self._root + folder)
            except OSError:
                break
            self._made_parents.discard(folder)

    def url(self, key: str, expires: int = 3600) -> str:
        """A ``file://`` URL of the object's absolute path; it does not expire."""
        check_expires(expires)
        return Path(self._leaf(key)[0]).as_uri()

    def describe(self) -> str:
        return self.root.as_uri()


def _is_object(there: os.stat_result | None) -> bool:
    """True if ``_leaf`` found a file (an object), not nothing or a folder of keys under it."""
    return there is not None and stat.S_ISREG(there.st_mode)


def _copy_into(fd: int, src: BinaryIO) -> None:
    with open(fd, "wb", closefd=False) as dst:
        shutil.copyfileobj(src, dst, WRITE_PIECE)


def _unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
