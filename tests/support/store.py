"""The S3 test server's credentials, and a local store whose tile writes can be held.

The store fixtures (``s3_server``: a moto S3 server on 127.0.0.1 for the session; ``s3_store_factory``:
a fresh bucket per call; ``store``: parametrized over "local" and "s3") are in tests/conftest.py.
"""

from __future__ import annotations

import threading

from fractally.store import LocalStore
from fractally.store.base import DEFAULT_CONTENT_TYPE

# Fake credentials for the test server; passed explicitly, never read from the environment.
S3_TEST_CREDENTIALS = {"access_key": "fractally-test", "secret_key": "fractally-test-secret"}
S3_TEST_REGION = "us-east-1"


#: ``small_write_pieces``' piece size: small enough that every test image spans many pieces.
SMALL_PIECE = 1000


class GatedStore(LocalStore):
    """A local-folder store whose tile writes wait until ``gate`` is set: a job held mid-render for as
    long as a test needs, without timing anything."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.gate = threading.Event()

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        if key.startswith("tiles/"):
            self.gate.wait(60)
        super().put(key, data, content_type)
