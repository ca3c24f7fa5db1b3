"""Settings, read from the environment once at start and passed down.

Nothing else in the code base reads ``os.environ``: functions, the CLI and the
tests build a ``Settings`` (from the environment or by hand) and hand it on.
Every variable is listed in docs/operations.md's configuration table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from fractally.store import ObjectStore, open_store

PREFIX = "FRACTALLY_"


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (OpenFaaS / k8s Secret mounts)."""
    value = env.get(PREFIX + name)
    if value:
        return value
    path = env.get(PREFIX + name + "_FILE")
    if path and Path(path).is_file():
        return Path(path).read_text().strip() or None
    return None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Where state lives and how functions reach each other."""

    store_url: str = "./data"
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_public_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    invoker: str = "inprocess"  # inprocess | http | queue
    render_tile_url: str | None = None
    assemble_url: str | None = None
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "FRACTALLY"
    nats_subject: str = "fractally"  # tile tasks: <subject>.tiles.<job>, assembly: <subject>.assemble.<job>
    nats_ack_wait: float = 60.0  # seconds a worker may stay silent before its task is redelivered
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    http_concurrency: int = 8
    #: Invocations a job is cut into (each a batch of tiles: ``invoke.plan_batches``); 0: twice the calls
    #: in flight (HTTP), or QUEUE_BATCHES. About the number of render_tile workers to keep busy, never
    #: the tile count.
    batches: int = 0
    http_timeout: float = 300.0  # seconds per tile call of the HTTP invoker
    assemble_timeout: float = 600.0  # seconds per assemble call (a large image takes longer than a tile)
    http_retries: int = 4
    max_deliveries: int = 5
    lease_timeout: float = 30.0  # seconds a job's dispatch lease lives unrenewed before another api takes it over
    url_expiry: int = 3600
    auth_token: str | None = None
    public_url: str | None = None

    def __post_init__(self) -> None:
        # Checked at start, not at the first finished job (a bad value would be a 500 on every status).
        if not 1 <= self.url_expiry <= 7 * 24 * 3600:
            raise ValueError(f"{PREFIX}URL_EXPIRY must be whole seconds from 1 to 604800 (7 days, the longest a "
                             f"presigned S3 URL may live), got {self.url_expiry}")
        if not self.lease_timeout > 0:
            raise ValueError(f"{PREFIX}LEASE_TIMEOUT must be a positive number of seconds, got {self.lease_timeout}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        base = cls()
        return cls(
            store_url=env.get(PREFIX + "STORE_URL", base.store_url),
            s3_endpoint=env.get(PREFIX + "S3_ENDPOINT") or None,
            s3_region=env.get(PREFIX + "S3_REGION") or None,
            s3_public_endpoint=env.get(PREFIX + "S3_PUBLIC_ENDPOINT") or None,
            s3_access_key=_read_secret(env, "S3_ACCESS_KEY"),
            s3_secret_key=_read_secret(env, "S3_SECRET_KEY"),
            invoker=env.get(PREFIX + "INVOKER", base.invoker),
            render_tile_url=env.get(PREFIX + "RENDER_TILE_URL") or None,
            assemble_url=env.get(PREFIX + "ASSEMBLE_URL") or None,
            nats_url=env.get(PREFIX + "NATS_URL", base.nats_url),
            nats_stream=env.get(PREFIX + "NATS_STREAM", base.nats_stream),
            nats_subject=env.get(PREFIX + "NATS_SUBJECT", base.nats_subject),
            nats_ack_wait=float(env.get(PREFIX + "NATS_ACK_WAIT", base.nats_ack_wait)),
            workers=_int(env, "WORKERS", base.workers),
            http_concurrency=_int(env, "HTTP_CONCURRENCY", base.http_concurrency),
            batches=_int(env, "BATCHES", base.batches),
            http_timeout=float(env.get(PREFIX + "HTTP_TIMEOUT", base.http_timeout)),
            assemble_timeout=float(env.get(PREFIX + "ASSEMBLE_TIMEOUT", base.assemble_timeout)),
            http_retries=_int(env, "HTTP_RETRIES", base.http_retries),
            max_deliveries=_int(env, "MAX_DELIVERIES", base.max_deliveries),
            lease_timeout=float(env.get(PREFIX + "LEASE_TIMEOUT", base.lease_timeout)),
            url_expiry=_int(env, "URL_EXPIRY", base.url_expiry),
            auth_token=_read_secret(env, "AUTH_TOKEN"),
            public_url=env.get(PREFIX + "PUBLIC_URL") or None,
        )

    def open_store(self) -> ObjectStore:
        """The store these settings name (no I/O: an S3 client is built on its first request)."""
        return open_store(self.store_url, endpoint_url=self.s3_endpoint, region=self.s3_region,
                          access_key=self.s3_access_key, secret_key=self.s3_secret_key,
                          public_endpoint_url=self.s3_public_endpoint)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)
