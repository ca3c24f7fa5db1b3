"""The object store: where every tile, manifest and result of a job lives.

``open_store(url)`` picks the backend from a URL, so the same code runs on a laptop
(``file:///srv/fractally`` or a plain folder path, the default) and on a cluster
(``s3://bucket/prefix`` plus an endpoint for MinIO). Importing this package does not import
any S3 SDK; the S3 backend loads botocore on its first request.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from fractally.store.base import MAX_KEY_LENGTH, ObjectStore, check_key, check_prefix
from fractally.store.local import LocalStore

__all__ = ["MAX_KEY_LENGTH", "LocalStore", "ObjectStore", "check_key", "check_prefix", "open_store"]


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    public_endpoint_url: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
) -> ObjectStore:
    """The store named by ``url``: ``file:///abs/path`` or a plain path (a folder, created if
    missing) or ``s3://bucket[/prefix]``.

    The S3 settings are ignored for a folder. Credentials are passed in by the caller (the
    config module reads the environment once); ``access_key=None`` lets the SDK's default
    chain find them. Raises ``ValueError`` for a URL it cannot use. Does no network I/O.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("store URL is empty; use file:///path, a folder path, or s3://bucket/prefix")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        from fractally.store.s3 import S3Store

        if not parts.netloc:
            raise ValueError(f"store URL {url!r} names no bucket; use s3://bucket/prefix")
        return S3Store(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=endpoint_url,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            public_endpoint_url=public_endpoint_url,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"store URL {url!r} is not a local absolute path; use file:///abs/path")
        return LocalStore(Path(unquote(parts.path)))
    if "://" in url:
        raise ValueError(f"store URL {url!r} has an unsupported scheme; use file:// or s3://")
    return LocalStore(Path(url))
