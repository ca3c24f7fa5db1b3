"""Store fixtures: a real S3 test server over HTTP, and one ``store`` per backend.

Loaded from tests/conftest.py via ``pytest_plugins``, so any test can ask for ``s3_server``
(the endpoint URL of a moto S3 server on 127.0.0.1, one per session), ``s3_store_factory``
(a fresh bucket per call) or ``store`` (parametrized: "local" and "s3").
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fractally.store import ObjectStore, open_store

# Fake credentials for the test server; passed explicitly, never read from the environment.
S3_TEST_CREDENTIALS = {"access_key": "fractally-test", "secret_key": "fractally-test-secret"}
S3_TEST_REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of an S3-compatible server (moto) listening on 127.0.0.1 for the session."""
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK away from the developer's ~/.aws, AWS_* variables and instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_store_factory(s3_server: str, aws_isolated: None) -> Iterator[Callable[..., Any]]:
    """``make(prefix="t", **kwargs) -> S3Store`` on a new, empty bucket; emptied afterwards."""
    made = []

    def make(prefix: str = "t", **kwargs: Any) -> Any:
        bucket = f"test-{uuid.uuid4().hex[:16]}"
        store = open_store(
            f"s3://{bucket}/{prefix}",
            endpoint_url=s3_server,
            region=S3_TEST_REGION,
            **{**S3_TEST_CREDENTIALS, **kwargs},
        )
        store.create_bucket()
        made.append(store)
        return store

    yield make
    for store in made:  # free the server's memory; the server outlives the test
        with contextlib.suppress(Exception):
            client = store.client
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
                for obj in page.get("Contents", ()):
                    client.delete_object(Bucket=store.bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=store.bucket)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> ObjectStore:
    """The same conformance tests run against a local folder and against S3 over HTTP."""
    if request.param == "local":
        return open_store((tmp_path / "store").as_uri())
    return request.getfixturevalue("s3_store_factory")()
