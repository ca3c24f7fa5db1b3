"""The S3 stand-in of the container tests: moto's S3 server, taking MinIO's command line, and keeping
its objects across a restart as MinIO does.

    s3-server server /data --address 127.0.0.1:9000

moto keeps objects in memory only. With its request recorder on, every request is appended to
``/data/moto-recording.jsonl``; a restarted container replays that file into a private server on
a free loopback port *before* it opens its public one (moto's state is per process, shared by
every server in it), so no client ever sees the store empty. Test data only: the file grows with
every request and holds every object's bytes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


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

    if recording.exists() and recording.stat().st_size:
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
