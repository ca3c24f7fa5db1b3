"""fractally/store/orphans.py: the half-written temporary files a killed process leaves are removed by its
successor on the same host, and nothing of a live process or of another host is touched (claims:
tests/jobs/test_claims.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from fractally.jobs import tasks
from fractally.store import orphans
from fractally.store.orphans import remove_orphans, temp_prefix
from fractally.store import LocalStore
from fractally.store.local import TMP_DIR

HOST = orphans.HOST  # the hostname and this pid namespace


def _touch(folder: Path, name: str) -> Path:
    (folder / name).write_bytes(b"half an image")
    return folder / name


def test_the_temporary_files_of_a_dead_process_are_removed_and_nothing_else(tmp_path, dead_pid):
    dead = [_touch(tmp_path, f"result-{dead_pid}@{HOST}~r1~x1"),
            _touch(tmp_path, f"result-{os.getpid()}@{HOST}~earlier~x2")]  # an earlier process with our pid
    kept = [_touch(tmp_path, f"{temp_prefix('result-')}x3"),  # this process
            _touch(tmp_path, f"result-{os.getppid()}@{HOST}~r1~x4"),  # a live one
            _touch(tmp_path, f"result-{dead_pid}@another-host~r1~x5"),  # its pid means nothing here
            _touch(tmp_path, f"put-{dead_pid}@{HOST}~r1~x6"),  # another kind
            _touch(tmp_path, "result-abc123")]  # not named by an owner
    assert remove_orphans(tmp_path, "result-") == 2
    assert not any(path.exists() for path in dead)
    assert all(path.exists() for path in kept)


def test_this_processs_temporary_names_say_whose_they_are():
    prefix = temp_prefix("put-")
    assert prefix.startswith(f"put-{os.getpid()}@{HOST}~") and prefix.endswith("~")
    assert prefix.count("~") == 2  # then this run's token: pids repeat, runs do not


def test_the_host_of_an_owner_names_the_pid_namespace_too():
    """Containers on the host's network share its hostname, not its pids (docker --network host,
    Kubernetes hostNetwork): a pid is only judged in the namespace it belongs to."""
    namespace = os.stat("/proc/self/ns/pid").st_ino
    assert HOST == f"{socket.gethostname()}.pidns{namespace}"
    assert "~" not in HOST and "@" not in HOST


def test_a_dead_pid_of_another_pid_namespace_on_this_host_is_not_judged_dead(tmp_path, dead_pid):
    elsewhere = f"{dead_pid}@{socket.gethostname()}.pidns1~r1"  # another container, the same hostname
    assert orphans.owner_is_dead(f"{dead_pid}@{HOST}~r1") and not orphans.owner_is_dead(elsewhere)
    kept = _touch(tmp_path, f"result-{elsewhere}~x1")
    assert remove_orphans(tmp_path, "result-") == 0 and kept.exists()


def test_removing_orphans_from_a_missing_folder_removes_nothing(tmp_path):
    assert remove_orphans(tmp_path / "gone", "put-") == 0


def test_a_store_opened_on_a_folder_removes_what_a_dead_writer_left_half_written(tmp_path, dead_pid):
    LocalStore(tmp_path)
    left = _touch(tmp_path / TMP_DIR, f"put-{dead_pid}@{HOST}~run~7")
    LocalStore(tmp_path)  # as the server that starts in the dead one's place
    assert not left.exists()


def test_the_local_stores_own_temporary_files_carry_its_pid_and_host(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    seen = []
    monkeypatch.setattr(os, "replace", lambda src, dst: seen.append(Path(src).name) or os.rename(src, dst))
    store.put("a/b", b"x")
    assert len(seen) == 1 and seen[0].startswith(temp_prefix("put-"))


def test_assemble_removes_a_dead_assemblers_half_written_result(local_store, ready_job, dead_pid):
    left = _touch(local_store.scratch_dir, f"{tasks.RESULT_TEMP}{dead_pid}@{HOST}~abc")
    assert tasks.assemble(ready_job.id, local_store)["status"] == "done"
    assert not left.exists()
    assert os.listdir(local_store.scratch_dir) == []  # and its own is gone too: moved into place

