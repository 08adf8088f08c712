"""One run at a time per output: a lease object ``<output>/_lock.json``.

The lease is created with a conditional write that fails when it exists (S3:
``PutObject`` with ``If-None-Match: *``; local: under the folder's ``flock``),
holds ``run_id``, ``host``, ``pid`` and ``heartbeat_at``, and is refreshed every
``heartbeat_s`` by a daemon thread (S3: a put with ``If-Match`` on the lease's
own ETag, so a run whose lease was taken over notices it). A lease whose
heartbeat is older than ``stale_after_s`` belongs to a dead run: the next run
takes it over (S3: ``If-Match`` on the stale ETag, so of two runs taking it
over at once only one wins; local: compare and write while holding an exclusive
``flock`` on the output folder, which serialises the runs of one host and of
hosts sharing a filesystem with working ``flock``, such as NFSv4; elsewhere use S3).
``release()`` deletes it (only while it is still ours).

A run that finds a live lease raises ``LeaseError`` (``xclip-index`` exit
status 5) and writes nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid

from jobs.retry import retry, s3_error_code, short_error
from xclip_core import storage

log = logging.getLogger(__name__)

LOCK_NAME = "_lock.json"


class LeaseError(RuntimeError):
    """Another run holds the output's lease (or ours was lost)."""


@dataclasses.dataclass(frozen=True)
class LeaseConfig:
    """Settings of the output lease (``[lease]`` in job.toml)."""
    heartbeat_s: float = 30.0     # refresh period
    stale_after_s: float = 300.0  # a lease not refreshed for this long belongs to a dead run

    def __post_init__(self):
        if not (self.heartbeat_s > 0 and self.stale_after_s > 2 * self.heartbeat_s):
            raise ValueError(f"lease: need heartbeat_s > 0 and stale_after_s > 2 * heartbeat_s, got "
                             f"heartbeat_s={self.heartbeat_s}, stale_after_s={self.stale_after_s}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class _Store:
    """Conditional create / replace / delete of one small object, S3 or local."""

    def __init__(self, uri: str):
        self.uri = uri
        self.s3 = storage.is_s3(uri)
        if self.s3:
            import boto3

            self.bucket, _, self.key = storage.strip_scheme(uri).partition("/")
            self.client = boto3.client("s3", endpoint_url=storage.endpoint_url(), region_name=storage.region())

    def create(self, body: bytes) -> str | None:
        """Write ``body`` if nothing is there; returns a version token, or None when it exists."""
        if self.s3:
            from botocore.exceptions import ClientError

            try:
                return retry(lambda: self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                                            IfNoneMatch="*")["ETag"], what="create lease")
            except ClientError as e:
                if s3_error_code(e) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return None
                raise
        with self._locked():
            if os.path.exists(self.uri):
                return None
            return self._write_local(body)

    def read(self) -> tuple[dict, str] | None:
        if self.s3:
            from botocore.exceptions import ClientError

            try:
                r = retry(lambda: self.client.get_object(Bucket=self.bucket, Key=self.key), what="read lease")
            except ClientError as e:
                if s3_error_code(e) in ("NoSuchKey", "NotFound"):
                    return None
                raise
            return json.loads(r["Body"].read()), r["ETag"]
        with self._locked():
            text = self._read_local()
        return None if text is None else (json.loads(text), text)

    def replace(self, body: bytes, token: str) -> str | None:
        """Overwrite only if the object is still version ``token``; returns the new token or None."""
        if self.s3:
            from botocore.exceptions import ClientError

            try:
                return retry(lambda: self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                                            IfMatch=token)["ETag"], what="refresh lease")
            except ClientError as e:
                if s3_error_code(e) in ("PreconditionFailed", "NoSuchKey", "ConditionalRequestConflict"):
                    return None
                raise
        with self._locked():
            if self._read_local() != token:
                return None
            return self._write_local(body)

    def delete(self, token: str) -> None:
        if self.s3:
            from botocore.exceptions import ClientError

            try:
                retry(lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=token),
                      what="release lease")
            except ClientError as e:
                if s3_error_code(e) not in ("PreconditionFailed", "NoSuchKey"):
                    raise
            return
        with self._locked():
            if self._read_local() == token:
                os.unlink(self.uri)

    # local: every check-and-write holds an exclusive flock on the output folder, so a
    # compare and the write after it are one step for every process and thread on this host
    @contextlib.contextmanager
    def _locked(self):
        folder = os.path.dirname(self.uri)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read_local(self) -> str | None:
        try:
            with open(self.uri, "rb") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def _write_local(self, body: bytes) -> str:
        tmp = f"{self.uri}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, self.uri)  # readers see the old body or the new one, never a part
        return body.decode()


class Lease:
    """``with Lease(output, run_id, cfg):`` holds the output's lease for the run (see module doc)."""

    def __init__(self, output: str, run_id: str, cfg: LeaseConfig = LeaseConfig()):
        self.output, self.run_id, self.cfg = output, run_id, cfg
        self.store = _Store(storage.join(output, LOCK_NAME))
        self.token: str | None = None
        self.took_over: dict | None = None  # the stale lease we replaced, if any
        self.lost: str | None = None  # why our lease is no longer ours
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "heartbeat_at": _now().isoformat(), "stale_after_s": self.cfg.stale_after_s},
                          sort_keys=True).encode()

    def acquire(self) -> "Lease":
        try:
            self.token = self.store.create(self._body())
            if self.token is None:
                held = self.store.read()
                if held is None:  # released between our two calls
                    self.token = self.store.create(self._body())
                else:
                    info, token = held
                    age = (_now() - dt.datetime.fromisoformat(info["heartbeat_at"])).total_seconds()
                    if age <= self.cfg.stale_after_s:
                        raise LeaseError(
                            f"--output {self.output} is in use by run {info.get('run_id')} (host {info.get('host')},"
                            f" pid {info.get('pid')}, heartbeat {age:.0f}s ago): wait for it to finish, or, if that "
                            f"run is dead, rerun after {self.cfg.stale_after_s - age:.0f}s when its lease is stale "
                            f"(or delete {self.store.uri})")
                    self.token = self.store.replace(self._body(), token)
                    if self.token is not None:
                        self.took_over = info
                        log.warning("took over the stale lease of run %s (heartbeat %.0fs ago)",
                                    info.get("run_id"), age)
        except LeaseError:
            raise
        except Exception as e:
            from jobs.writer import OutputError

            raise OutputError(f"--output {self.output}: cannot take the output lease ({short_error(e)})") from None
        if self.token is None:
            raise LeaseError(f"--output {self.output}: another run took the lease at the same time; rerun later")
        self._thread = threading.Thread(target=self._heartbeat, name="xclip-lease", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(self.cfg.heartbeat_s):
            try:
                token = self.store.replace(self._body(), self.token)
            except Exception as e:  # storage trouble (or a bug): retried next beat, but never for longer
                failing = time.monotonic() - last_beat  # than the lease stays ours: then the run stops
                log.warning("lease heartbeat failed (%.0fs without one): %s", failing, short_error(e))
                if failing >= self.cfg.stale_after_s:
                    self.lost = f"no heartbeat for {failing:.0f}s, last error {short_error(e)}"
                    log.error("the lease on %s may be taken over: %s", self.output, self.lost)
                    return
                continue
            if token is None:
                self.lost = f"taken over by another run (no heartbeat for {self.cfg.stale_after_s}s)"
                log.error("the lease on %s was taken over by another run", self.output)
                return
            self.token, last_beat = token, time.monotonic()

    def check(self) -> None:
        """Raise ``LeaseError`` when our lease was taken over, or could not be refreshed for so long
        that another run may take it over."""
        if self.lost:
            raise LeaseError(f"--output {self.output}: this run's lease is lost: {self.lost}; "
                             f"stopped before writing more")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.token is not None and not self.lost:
            try:
                self.store.delete(self.token)
            except Exception as e:  # it goes stale on its own
                log.warning("could not release the lease on %s: %s", self.output, short_error(e))
        self.token = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
