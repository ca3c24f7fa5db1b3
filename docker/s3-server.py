"""The S3 stand-in of the container tests: moto's S3 server, taking MinIO's command line, and keeping
its objects across a restart as MinIO does.

    s3-server server /data --address 127.0.0.1:9000

moto keeps objects in memory only. With its request recorder on, every request that changes
something (not GET or HEAD) is appended to ``/data/moto-recording.jsonl``; a restarted container
replays that file into a private server on a free loopback port *before* it opens its public one
(moto's state is per process, shared by every server in it), so no client ever sees the store empty. Test data only: the file grows with
every request and holds every object's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path


def _drop_torn_lines(recording: Path) -> None:
    lines = recording.read_text().splitlines()
    whole = []
    for line in lines:
        try:
            json.loads(line)
            whole.append(line)
        except ValueError:
            pass
    if len(whole) != len(lines):
        recording.write_text("".join(line + "\n" for line in whole))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="s3-server")
    parser.add_argument("command", choices=["server"])
    parser.add_argument("data")
    parser.add_argument("--address", default="127.0.0.1:9000")
    parser.add_argument("--console-address", default=None)  # MinIO's; the stand-in has no console
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    recording = Path(args.data) / "moto-recording.jsonl"
    recording.parent.mkdir(parents=True, exist_ok=True)
    os.environ["MOTO_RECORDER_FILEPATH"] = str(recording)
    os.environ["MOTO_ENABLE_RECORDING"] = "True"

    from moto.moto_api import recorder
    from moto.server import ThreadedMotoServer

    record = recorder._record_request  # reads are not replayed: only what changed the store
    one_at_a_time = threading.Lock()  # moto appends a line per request from each server thread

    def record_changes(request, body=None):  # type: ignore[no-untyped-def]
        if request.method not in ("GET", "HEAD"):
            with one_at_a_time:
                record(request, body)

    recorder._record_request = record_changes

    if recording.exists() and recording.stat().st_size:
        _drop_torn_lines(recording)  # a line being written when the container was killed
        private = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
        private.start()
        replay_host, replay_port = private.get_host_and_port()
        recorder.replay_recording(target_host=f"http://{replay_host}:{replay_port}")
        private.stop()
        print(f"s3-server: replayed {recording}", flush=True)
    public = ThreadedMotoServer(host or "127.0.0.1", int(port), verbose=False)
    public.start()
    print(f"s3-server: serving S3 on {host}:{port}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    public.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main(sys.argv[1:]))
