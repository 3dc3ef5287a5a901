"""Object storage: results under `-o s3://bucket/prefix`, and `s3://bucket/key` inputs.

Inputs are downloaded to local scratch by whoever analyses them (a Ray worker, or this process) and removed
afterwards; their identity (for resuming) is their URI, size and ETag, the same on every machine.

Results are staged on local disk, uploaded, the manifest last.

An S3 prefix has no rename: a result is complete when its manifest exists, and the manifest is uploaded
after every other file with a conditional put (`If-None-Match: *`), so a result without its manifest counts
as absent and is redone, and of two workers finishing the same input only one publishes. The endpoint and
credentials are boto3's own settings (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, profiles).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from emotiontrack.errors import InputError, OutputError
from emotiontrack.outputs.publish import MANIFEST

SCHEME = "s3://"


def is_s3(text: str | Path) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class S3Prefix:
    """s3://bucket/key: a folder-like prefix (key without trailing slash; "" for the bucket's root)."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Prefix:
        bucket, _, key = uri[len(SCHEME):].partition("/")
        if not bucket:
            raise OutputError(f"{uri}: no bucket in this S3 URI")
        return cls(bucket, key.strip("/"))

    def child(self, name: str) -> S3Prefix:
        return S3Prefix(self.bucket, f"{self.key}/{name}" if self.key else name)

    def object_key(self, relative: str) -> str:
        return f"{self.key}/{relative}" if self.key else relative

    def staging(self) -> S3Prefix:
        """A fresh hidden prefix beside this one, for an upload in progress (".<name>.partial-<hex>")."""
        parent, _, name = self.key.rpartition("/")
        hidden = f".{name}.partial-{secrets.token_hex(4)}"
        return S3Prefix(self.bucket, f"{parent}/{hidden}" if parent else hidden)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"


def _client():
    import boto3

    return boto3.client("s3")


def _errors():
    import botocore.exceptions

    return botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError


def check_writable(prefix: S3Prefix) -> None:
    """Fail at once if the bucket cannot be reached or written."""
    probe = prefix.object_key(".emotiontrack-write-test")
    try:
        client = _client()
        client.put_object(Bucket=prefix.bucket, Key=probe, Body=b"")
        client.delete_object(Bucket=prefix.bucket, Key=probe)
    except ImportError:
        raise OutputError('s3:// outputs need boto3: pip install "emotiontrack[ray]"') from None
    except _errors() as exc:
        raise OutputError(f"cannot write to {prefix}: {_message(exc)}") from None


def read_manifest(prefix: S3Prefix) -> dict | None:
    """The manifest of the result under `prefix`, or None if there is no complete result."""
    try:
        body = _client().get_object(Bucket=prefix.bucket, Key=prefix.object_key(MANIFEST))["Body"].read()
        return json.loads(body)
    except (*_errors(), ValueError):
        return None


def upload_result(folder: Path, prefix: S3Prefix) -> None:
    """Upload a finished result folder, replacing an older result under `prefix` only once the new one is
    uploaded whole. The files go first to a hidden staging prefix beside it (the long part, where a network
    or quota failure is likely): an upload that fails there leaves the older result as it was. Then the old
    manifest is removed, the files are copied into place on the server, files of the old result that the
    new one lacks are removed, and the new manifest is put last."""
    client = _client()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    staging = prefix.staging()
    try:
        for relative in files:
            client.upload_file(str(folder / relative), prefix.bucket, staging.object_key(relative))
        client.delete_object(Bucket=prefix.bucket, Key=prefix.object_key(MANIFEST))
        for relative in files:
            client.copy({"Bucket": prefix.bucket, "Key": staging.object_key(relative)}, prefix.bucket,
                        prefix.object_key(relative))
        _delete(client, prefix, keep={prefix.object_key(relative) for relative in files})
        client.put_object(Bucket=prefix.bucket, Key=prefix.object_key(MANIFEST),
                          Body=(folder / MANIFEST).read_bytes(), IfNoneMatch="*")
    except _errors() as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "PreconditionFailed":
            return  # another worker published this result meanwhile
        raise OutputError(f"cannot upload to {prefix}: {_message(exc)}") from None
    finally:
        _delete_quietly(client, staging)


def _delete(client, prefix: S3Prefix, keep: Collection[str] = ()) -> None:
    """Every object under `prefix/` except those in `keep`."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=prefix.bucket, Prefix=prefix.object_key("")):
        for item in page.get("Contents", []):
            if item["Key"] not in keep:
                client.delete_object(Bucket=prefix.bucket, Key=item["Key"])


def _delete_quietly(client, prefix: S3Prefix) -> None:
    """Remove a staging prefix; a failure leaves it for the bucket's lifecycle rules (it is never read)."""
    try:
        _delete(client, prefix)
    except _errors():
        pass


def upload_files(paths: list[Path], prefix: S3Prefix) -> None:
    """Files of the run (summary, overview, index) to the prefix's root, replacing older ones."""
    client = _client()
    try:
        for path in paths:
            client.upload_file(str(path), prefix.bucket, prefix.object_key(path.name))
    except _errors() as exc:
        raise OutputError(f"cannot upload to {prefix}: {_message(exc)}") from None


def download(prefix: S3Prefix, relative: str, target: Path) -> bool:
    """One object of a result to a local file; False if it is not there."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _client().download_file(prefix.bucket, prefix.object_key(relative), str(target))
        return True
    except _errors():
        return False


def _message(exc: BaseException) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return f"{error.get('Code')}: {error.get('Message')}" if error else str(exc).splitlines()[0]


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise InputError(f"{uri}: an s3:// input must name one object (s3://bucket/key)")
    return bucket, key


def object_identity(uri: str) -> dict[str, object]:
    """What identifies an s3:// input in a manifest: its URI, size and ETag."""
    bucket, key = split_uri(uri)
    try:
        head = _client().head_object(Bucket=bucket, Key=key)
    except ImportError:
        raise InputError(f'{uri}: s3:// inputs need boto3: pip install "emotiontrack[ray]"') from None
    except _errors() as exc:
        raise InputError(f"{uri}: cannot read ({_message(exc)})") from None
    return {"source": uri, "source_size": head["ContentLength"], "source_etag": head["ETag"]}


def download_object(uri: str, target: Path) -> Path:
    """An s3:// input to a local file (replacing an older copy)."""
    bucket, key = split_uri(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _client().download_file(bucket, key, str(target))
    except _errors() as exc:
        target.unlink(missing_ok=True)
        raise InputError(f"{uri}: cannot download ({_message(exc)})") from None
    return target
