"""Cold-start cost of the S3 SDKs we could use: boto3, botocore alone (what the store uses), the minio SDK.

Every render_tile and assemble replica that scales from zero pays, before it does any work,
for importing the S3 SDK, building a client and making its first request. This measures exactly
that, side by side in one run, each sample in a fresh interpreter:

    import the SDK  ->  create a client  ->  first request (PUT of a 1 KiB object, then GET it)

against a local S3 test server (moto) on 127.0.0.1 started by this script. Runs alternate between
the SDKs (one discarded warm-up each, so both read compiled .pyc files), and the median of --runs
samples is printed per phase, with the boto3/minio ratio. "process" is the wall time of the whole
child process, interpreter start-up included; "python only" is that start-up alone.

    .venv/bin/python bench/store_import.py            # 7 samples each
    .venv/bin/python bench/store_import.py --runs 11
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BUCKET = "bench-bucket"

#: Each child times the three phases of one SDK the same way: (import, client, first PUT then GET).
TIMED = """
import sys, time, json, io
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
{client}
t2 = time.perf_counter()
{requests}
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "client": t2 - t1, "first request": t3 - t2, "in-process total": t3 - t0}}))
"""
CONFIG = """config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=60,
                  retries={"mode": "standard", "max_attempts": 3})"""
BOTO_REQUESTS = """client.put_object(Bucket=sys.argv[2], Key="cold/boto", Body=b"x" * 1024)
assert client.get_object(Bucket=sys.argv[2], Key="cold/boto")["Body"].read() == b"x" * 1024"""

CHILD = {
    "boto3": TIMED.format(
        imports="import boto3\nfrom botocore.config import Config",
        client=f"""client = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
    aws_access_key_id="bench", aws_secret_access_key="bench-secret", {CONFIG})""",
        requests=BOTO_REQUESTS),
    "botocore": TIMED.format(
        imports="import botocore.session\nfrom botocore.config import Config",
        client=f"""client = botocore.session.Session().create_client("s3", endpoint_url=sys.argv[1],
    region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench-secret", {CONFIG})""",
        requests=BOTO_REQUESTS),
    "minio": TIMED.format(
        imports="import minio",
        client="""client = minio.Minio(sys.argv[1].split("://", 1)[1], access_key="bench", secret_key="bench-secret",
    secure=False, region="us-east-1")""",
        requests="""client.put_object(sys.argv[2], "cold/minio", io.BytesIO(b"x" * 1024), 1024)
response = client.get_object(sys.argv[2], "cold/minio")
assert response.read() == b"x" * 1024
response.close(); response.release_conn()"""),
    "python only": """
import json
print(json.dumps({}))
""",
}

PHASES = ["import", "client", "first request", "in-process total", "process"]


def run_child(name: str, endpoint: str) -> dict[str, float]:
    """One sample: a fresh interpreter with no AWS configuration from the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD[name], endpoint, BUCKET],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    wall = time.perf_counter() - start
    sample = json.loads(out.strip().splitlines()[-1])
    sample["process"] = wall
    return {k: v * 1000.0 for k, v in sample.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="samples per SDK (median is shown; >= 5)")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench-secret",
        ).create_bucket(Bucket=BUCKET)

        names = list(CHILD)
        samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        for name in names:  # warm-up: .pyc files and the server's first-request work
            run_child(name, endpoint)
        for _ in range(args.runs):
            for name in names:  # interleaved, so drift in machine load hits both alike
                samples[name].append(run_child(name, endpoint))
    finally:
        server.stop()

    med = {
        n: {p: statistics.median(s[p] for s in samples[n]) for p in PHASES if p in samples[n][0]}
        for n in names
    }
    print(f"S3 SDK cold start, median of {args.runs} fresh processes each (ms), "
          f"against moto on {endpoint}")
    print(f"{'phase':<18}{'boto3':>10}{'botocore':>10}{'minio':>10}{'botocore/minio':>16}")
    for p in PHASES:
        b, c, m = med["boto3"][p], med["botocore"][p], med["minio"][p]
        ratio = f"{c / m:>15.2f}x" if m >= 1.0 else f"{'-':>16}"  # no ratio of a near-zero time
        print(f"{p:<18}{b:>10.1f}{c:>10.1f}{m:>10.1f}{ratio}")
    print(f"{'python only':<18}{med['python only']['process']:>10.1f}  (interpreter start-up, "
          f"included in 'process')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
