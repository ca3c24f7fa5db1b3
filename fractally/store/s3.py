"""The S3 backend (AWS S3, MinIO, any S3-compatible server), built on botocore.

Why botocore, and not boto3 or the minio SDK
--------------------------------------------
Measured with ``.venv/bin/python bench/store_import.py --runs 7`` (a fresh interpreter per
sample, median of 7, against a local moto server; import + client + first PUT/GET of 1 KiB;
2026-12-04, 2 shared cores):

    phase               boto3   botocore    minio   botocore/minio
    import              173 ms    157 ms    215 ms      0.73x
    client creation     122 ms     94 ms    0.2 ms        -     (botocore loads the S3 service model here)
    first request        18 ms     18 ms     13 ms      1.41x
    in-process total    316 ms    270 ms    227 ms      1.19x
    whole process       427 ms    390 ms    293 ms      1.33x   (python start-up alone: 34 ms)

boto3 is a layer over botocore's client (sessions, resources, s3transfer's managed transfers) that the
store does not use; the client itself is botocore's, so building it from botocore directly is the
same client for 46 ms less at every cold start. The minio SDK would save another 43 ms, but it cannot
do what the store must do (7.2.20):

* Conditional writes. ``put_if_absent`` is ``PutObject`` with ``If-None-Match: *`` and
  ``put_file(if_absent=True)`` is ``CompleteMultipartUpload`` with ``If-None-Match: *``; botocore
  exposes both as ``IfNoneMatch``. minio's ``put_object`` has no such parameter and turns any
  extra header into ``x-amz-meta-*`` user metadata, so it cannot send the condition at all.
* Timeouts and retries in one ``botocore.config.Config`` (connect 5 s, read 60 s, "standard"
  retry mode with 3 attempts, which also retries throttling and 5xx), and typed exceptions for
  connection failures that map cleanly onto ``StoreUnavailable``.
* Presigned GET URLs and multipart uploads are equally good in both.

The cost is paid once per process: botocore is imported and the client built lazily on first
use (``open_store`` itself does no I/O and imports nothing), and the one client is shared by all
threads (botocore clients are thread-safe). A local-folder service never imports botocore. The
images also drop the service models of every AWS service but S3 and the credential services from
botocore's data (Dockerfile): botocore lists them all, one ``stat`` each, when it builds a client.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fractally.errors import KeyNotFound, StoreUnavailable
from fractally.store.base import (
    DEFAULT_CONTENT_TYPE,
    JoinPart,
    ObjectStore,
    check_expires,
    check_key,
    check_prefix,
    is_valid_key,
)

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB  # put_file holds one part in memory at a time
_MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
JOIN_PARALLEL = 8  # uploaded parts of a join in flight at once, and objects read ahead of it
JOIN_COPIES = 32  # parts of a join copied inside the store at once
_END = object()
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Codes that mean "this store cannot work as configured": answered as 503, not as the caller's fault.
_UNUSABLE_CODES = {
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "AllAccessDisabled",
}
_CONFLICT_RETRIES = 4  # S3 answers 409 ConditionalRequestConflict while a racing write is in flight


class S3Store(ObjectStore):
    """Objects in ``bucket`` under an optional key ``prefix``.

    ``endpoint_url`` selects MinIO or another S3-compatible server (path-style addressing is
    then used, which MinIO needs). ``access_key``/``secret_key`` left as None means the SDK's
    default chain (environment, ``~/.aws``, instance or pod role). ``public_endpoint_url`` is the
    address clients use when it differs from the one the service uses (e.g. MinIO inside a
    cluster): presigned URLs are signed for that host, since a SigV4 signature covers the host.
    """

    join_part_minimum = _MIN_PART_SIZE

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        public_endpoint_url: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if not _BUCKET_NAME.fullmatch(bucket or ""):
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        prefix = (prefix or "").strip("/")
        if prefix:
            check_key(prefix)
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither (SDK default chain)")
        if part_size < _MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {_MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.public_endpoint_url = public_endpoint_url
        self.region = region or ("us-east-1" if endpoint_url else None)
        self._access_key = access_key
        self._secret_key = secret_key
        self._timeouts = (connect_timeout, read_timeout, max_attempts)
        self.part_size = part_size
        self.list_page_size = 1000  # S3's maximum; tests lower it to exercise pagination
        self._lock = threading.Lock()
        self._clients: dict[str | None, Any] = {}

    # -- the SDK, loaded on first use ------------------------------------------------------

    def _client_for(self, endpoint_url: str | None) -> Any:
        with self._lock:
            if endpoint_url not in self._clients:
                import botocore.session
                from botocore.config import Config

                connect_timeout, read_timeout, max_attempts = self._timeouts
                config = Config(
                    signature_version="s3v4",
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    retries={"mode": "standard", "max_attempts": max_attempts},
                    max_pool_connections=16,
                    s3={"addressing_style": "path"} if endpoint_url else {},
                    # S3-compatible servers do not all accept the newer default CRC checksums
                    request_checksum_calculation="when_required" if endpoint_url else "when_supported",
                    response_checksum_validation="when_required" if endpoint_url else "when_supported",
                )
                self._clients[endpoint_url] = botocore.session.Session().create_client(
                    "s3", region_name=self.region, endpoint_url=endpoint_url, config=config,
                    aws_access_key_id=self._access_key, aws_secret_access_key=self._secret_key,
                )
            return self._clients[endpoint_url]

    def prepare(self) -> None:
        # Building the client takes about 0.1-0.2 s (the module docstring). A client that cannot be
        # built fails again on the first request, which answers it properly.
        with contextlib.suppress(Exception):
            self.client  # noqa: B018

    @property
    def client(self) -> Any:
        """The botocore S3 client all requests go through (created on first use)."""
        return self._client_for(self.endpoint_url)

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn SDK exceptions into the store's: KeyNotFound, StoreUnavailable, or re-raise."""
        from botocore import exceptions as bx

        try:
            yield
        except bx.ClientError as exc:
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if key is not None and code in ("NoSuchKey", "404", "NotFound"):
                raise KeyNotFound(f"no object at key {key!r}") from exc
            if status >= 500 or code in _UNUSABLE_CODES:
                raise StoreUnavailable("the object store refused the request; try again later") from exc
            raise
        except (bx.ConnectionError, bx.HTTPClientError) as exc:
            raise StoreUnavailable("the object store cannot be reached; try again later") from exc
        except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError) as exc:
            raise StoreUnavailable("the object store has no usable credentials") from exc

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- writing ---------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        name = self._full(key)
        with self._errors(key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(data), ContentType=content_type)

    def put_if_absent(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> bool:
        """``PutObject`` with ``If-None-Match: *``; the server decides, so it is atomic.

        One caveat of any conditional write over a network: if the first attempt succeeded
        but its response was lost, the SDK's retry gets 412 and this returns False although
        the object is this call's data. For idempotent work (same key, same bytes) that is
        the right answer anyway.
        """
        name = self._full(key)
        data = bytes(data)
        with self._errors(key):
            return self._conditional(lambda: self.client.put_object(
                Bucket=self.bucket, Key=name, Body=data, ContentType=content_type, IfNoneMatch="*",
            ))

    def _conditional(self, call: Callable[[], Any]) -> bool:
        """Run a write carrying ``If-None-Match: *``: True if it wrote, False on 412."""
        from botocore.exceptions import ClientError

        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                call()
                return True
            except ClientError as exc:
                if _code(exc) == "PreconditionFailed":
                    return False
                if _code(exc) != "ConditionalRequestConflict" or attempt == _CONFLICT_RETRIES:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def put_file(
        self,
        key: str,
        path: str | Path,
        content_type: str = DEFAULT_CONTENT_TYPE,
        if_absent: bool = False,
    ) -> bool:
        """Stream the file up: one ``PutObject`` up to ``part_size``, else a multipart upload.

        Parts are sent one after another, so memory stays at one part (8 MiB by default)
        whatever the file size. With ``if_absent`` the condition rides on the final
        ``PutObject``/``CompleteMultipartUpload``, so it is exactly as atomic as
        ``put_if_absent``; a HEAD first skips the upload when the object is already there.
        A failed multipart upload is aborted; if even the abort fails, the parts linger until
        a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them.
        """
        name = self._full(key)
        size = os.stat(path).st_size
        condition = {"IfNoneMatch": "*"} if if_absent else {}
        with self._errors(key):
            if if_absent and self._head(name):
                return False
            with open(path, "rb") as f:
                if size > self.part_size:
                    return self._multipart(name, f, content_type, condition)

                def put_whole() -> None:
                    f.seek(0)  # _conditional may send it again
                    self.client.put_object(
                        Bucket=self.bucket, Key=name, Body=f, ContentType=content_type, **condition,
                    )

                return self._conditional(put_whole)

    def _multipart(self, name: str, f: Any, content_type: str, condition: dict[str, str]) -> bool:
        client = self.client
        upload_id = client.create_multipart_upload(
            Bucket=self.bucket, Key=name, ContentType=content_type,
        )["UploadId"]
        try:
            parts = []
            while chunk := f.read(self.part_size):
                number = len(parts) + 1
                etag = client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=chunk,
                )["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
            written = self._conditional(lambda: client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, **condition,
            ))
        except BaseException:
            self._abort(name, upload_id)
            raise
        if not written:
            self._abort(name, upload_id)
        return written

    def _abort(self, name: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        name = self._full(key)
        with self._errors(key):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
            with contextlib.closing(body):
                return body.read()

    def _head(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
            return True
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def exists(self, key: str) -> bool:
        name = self._full(key)
        with self._errors():
            return self._head(name)

    def list(self, prefix: str = "") -> list[str]:
        full = self.prefix + check_prefix(prefix)
        keys = []
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.list_page_size},
            )
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", ()))
        return sorted(k for k in keys if is_valid_key(k))

    def list_sizes(self, prefix: str = "") -> dict[str, int]:
        full = self.prefix + check_prefix(prefix)
        sizes = {}
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": self.list_page_size},
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"][len(self.prefix):]
                    if is_valid_key(key):
                        sizes[key] = int(obj["Size"])
        return dict(sorted(sizes.items()))

    def join(self, key: str, parts: Sequence[JoinPart], *, sizes: dict[str, int] | None = None,
             content_type: str = DEFAULT_CONTENT_TYPE, if_absent: bool = False) -> bool:
        """A multipart upload whose parts are, where they can be, the objects themselves, copied inside
        the store (``UploadPartCopy``): their bytes never pass through this process.

        Every part but the last must be at least 5 MiB, so small objects and inline bytes are read
        into a buffer sent once it reaches that size; an object of 5 MiB or more met with the buffer
        empty is copied whole. A join under 5 MiB in all is one ``PutObject`` (parts still being
        made count as nothing there: a join that needs them to reach 5 MiB waits for them first).
        """
        sizes = dict(sizes or {})
        for part in parts:
            if isinstance(part, str) and part not in sizes:
                sizes[part] = self._size(part)
        total = sum(len(p) if isinstance(p, bytes) else sizes[p] if isinstance(p, str) else 0 for p in parts)
        name = self._full(key)
        # ``if_absent`` rests on the conditional write alone (no HEAD first, as put_file has): a join's
        # caller has just looked for the object, and here the HEAD would be a round trip on every job.
        condition = {"IfNoneMatch": "*"} if if_absent else {}
        with self._errors(key):
            copied = {p for p in parts if isinstance(p, str) and sizes[p] >= _MIN_PART_SIZE}
            if total < _MIN_PART_SIZE:
                parts = [p() if callable(p) else p for p in parts]
                total = sum(len(p) if isinstance(p, bytes) else sizes[p] for p in parts)
            if total < _MIN_PART_SIZE:
                data = b"".join(self._read_ahead(parts, copied=set()))
                return self._conditional(lambda: self.client.put_object(
                    Bucket=self.bucket, Key=name, Body=data, ContentType=content_type, **condition))
            client = self.client
            upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=name, ContentType=content_type)["UploadId"]
            sent: list[Future] = []

            def send(number: int, body: dict[str, Any]) -> dict[str, Any]:
                if "CopySource" in body:
                    etag = client.upload_part_copy(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                   PartNumber=number, **body)["CopyPartResult"]["ETag"]
                else:
                    etag = client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                              PartNumber=number, **body)["ETag"]
                return {"ETag": etag, "PartNumber": number}

            # Copies go up JOIN_COPIES at a time (each is a round trip and the store's copying, nothing
            # held here), uploaded parts JOIN_PARALLEL at a time (that bounds the memory they hold).
            with ThreadPoolExecutor(JOIN_COPIES + JOIN_PARALLEL, thread_name_prefix="s3-join") as pool:
                slots = {"copy": threading.BoundedSemaphore(JOIN_COPIES),
                         "upload": threading.BoundedSemaphore(JOIN_PARALLEL)}

                def submit(**body: Any) -> None:
                    slot = slots["copy" if "CopySource" in body else "upload"]
                    slot.acquire()
                    future = pool.submit(send, len(sent) + 1, body)
                    future.add_done_callback(lambda _: slot.release())
                    sent.append(future)

                try:
                    buffer = bytearray()
                    for part, data in zip(parts, self._read_ahead(parts, copied)):
                        if data is None and not buffer:
                            submit(CopySource={"Bucket": self.bucket, "Key": self._full(part)})
                            continue
                        buffer += data if data is not None else self.get(part)
                        if len(buffer) >= _MIN_PART_SIZE:
                            submit(Body=bytes(buffer))
                            buffer.clear()
                    if buffer or not sent:
                        submit(Body=bytes(buffer))
                    done = [f.result() for f in sent]
                    written = self._conditional(lambda: client.complete_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": done},
                        **condition))
                except BaseException:
                    for f in sent:
                        f.cancel()
                    self._abort(name, upload_id)
                    raise
            if not written:
                self._abort(name, upload_id)
            return written

    def _read_ahead(self, parts: Sequence[JoinPart], copied: set[str]) -> Iterator[bytes | None]:
        """The bytes of each part in order (None for one to be copied in the store), JOIN_PARALLEL
        objects read (or parts being made waited for) ahead: a join of many small pieces waits about
        one round trip per JOIN_PARALLEL pieces instead of one per piece, holding at most that many in
        memory. Parts to be copied take no place among them, so the small pieces after a run of big
        ones are read while those copy."""
        with ThreadPoolExecutor(JOIN_PARALLEL, thread_name_prefix="s3-read") as pool:
            ahead: deque[Future | bytes | None] = deque()
            todo = iter(parts)
            reading = 0

            def fill() -> None:
                nonlocal reading
                while reading < JOIN_PARALLEL:
                    part = next(todo, _END)
                    if part is _END:
                        return
                    if isinstance(part, bytes) or part in copied:
                        ahead.append(part if isinstance(part, bytes) else None)
                    else:
                        ahead.append(pool.submit(self.get, part) if isinstance(part, str) else pool.submit(part))
                        reading += 1

            fill()
            while ahead:
                item = ahead.popleft()
                if isinstance(item, Future):
                    reading -= 1
                fill()
                yield item.result() if isinstance(item, Future) else item

    def delete_many(self, keys: Iterable[str]) -> None:
        """``DeleteObjects``, 1,000 keys a request (S3's limit)."""
        names = [self._full(k) for k in keys]
        with self._errors():
            for start in range(0, len(names), 1000):
                chunk = names[start:start + 1000]
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": n} for n in chunk], "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StoreUnavailable(f"the store did not delete {first.get('Key')}: {first.get('Message')}")

    def _size(self, key: str) -> int:
        with self._errors(key):
            return int(self.client.head_object(Bucket=self.bucket, Key=self._full(key))["ContentLength"])

    def delete(self, key: str) -> None:
        name = self._full(key)
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def url(self, key: str, expires: int = 3600) -> str:
        """A presigned GET URL (no request is made), for ``public_endpoint_url`` if set."""
        name = self._full(key)
        check_expires(expires)
        client = self._client_for(self.public_endpoint_url or self.endpoint_url)
        with self._errors(key):
            return client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=expires,
            )

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    # -- setup -----------------------------------------------------------------------------

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for tests and a fresh MinIO); idempotent."""
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.region and self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with self._errors():
            try:
                self.client.create_bucket(**args)
            except ClientError as exc:
                if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
