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
status 7) and writes nothing.

Every ``run``, ``relabel``, ``moderate``, ``build-index`` and ``restore`` takes it
(``xclip_store.open_output(..., mode="w")``); the lease names the ``command``.

Dead holders on this host. The lease also records the holder's boot id and its
process start time (``/proc/<pid>/stat``). A lease held on this host (same host
name and boot) whose pid is gone, or is now another process (another start
time), is taken over at once instead of after ``stale_after_s``.

Generations. Each acquisition has a new ``lease_id`` and a ``generation`` one
above the lease it replaced. ``check(what)`` reads the stored lease and raises
``LeaseError`` unless it is still this acquisition: the writer calls it before
every commit (chunks, deletions, optimize, index builds, manifests), so a run
whose lease was taken over (it stalled past ``stale_after_s``) commits nothing
more. Not guaranteed: a takeover in the instant between one check and the
commit after it (LanceDB commits cannot be made conditional on the lease).
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

from xclip_core import storage
from xclip_store.errors import LeaseError, OutputError
from xclip_store.retry import retry, s3_error_code, short_error

log = logging.getLogger(__name__)

LOCK_NAME = "_lock.json"


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


def _read_first(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _boot_id() -> str | None:
    return _read_first("/proc/sys/kernel/random/boot_id")


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, /proc/<pid>/stat field 22), or None."""
    stat = _read_first(f"/proc/{int(pid)}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, OverflowError):
        return True  # exists (another user's), or we cannot tell: assume alive
    return True


def holder_is_dead(info: dict) -> bool:
    """True when the lease ``info`` was taken on this host (same host name and boot) by a process
    that is gone or whose pid now belongs to another process (another start time)."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    boot = _boot_id()
    if info.get("boot_id") and boot and info["boot_id"] != boot:
        return True  # this host rebooted since: every process of that boot is gone
    if not _pid_alive(info["pid"]):
        return True
    start = _process_start(info["pid"])
    return bool(info.get("pid_start") and start and start != info["pid_start"])


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

    def __init__(self, output: str, run_id: str, cfg: LeaseConfig = LeaseConfig(), *, command: str = "run"):
        self.output, self.run_id, self.cfg, self.command = output, run_id, cfg, command
        self.lease_id = uuid.uuid4().hex  # this acquisition (check() compares it with the stored lease)
        self.generation = 1  # one above the lease this one replaced
        self.store = _Store(storage.join(output, LOCK_NAME))
        self.token: str | None = None
        self.took_over: dict | None = None  # the stale lease we replaced, if any
        self.lost: str | None = None  # why our lease is no longer ours
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "command": self.command, "host": socket.gethostname(),
                           "pid": os.getpid(), "pid_start": _process_start(os.getpid()), "boot_id": _boot_id(),
                           "lease_id": self.lease_id, "generation": self.generation,
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
                    dead = holder_is_dead(info)
                    if age <= self.cfg.stale_after_s and not dead:
                        raise LeaseError(
                            f"--output {self.output} is in use by run {info.get('run_id')} (xclip-index "
                            f"{info.get('command', 'run')}, host {info.get('host')}, pid {info.get('pid')}, heartbeat "
                            f"{age:.0f}s ago): wait for it to finish, or, if that run is dead, rerun after "
                            f"{self.cfg.stale_after_s - age:.0f}s when its lease is stale (or delete {self.store.uri})")
                    self.generation = int(info.get("generation") or 0) + 1
                    self.token = self.store.replace(self._body(), token)
                    if self.token is not None:
                        self.took_over = info
                        log.warning("took over the %s lease of run %s (%s)",
                                    "dead" if dead else "stale", info.get("run_id"),
                                    f"pid {info.get('pid')} on this host is gone" if dead
                                    else f"heartbeat {age:.0f}s ago")
        except LeaseError:
            raise
        except Exception as e:
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

    def check(self, what: str | None = None) -> None:
        """Raise ``LeaseError`` when our lease was taken over, or could not be refreshed for so long
        that another run may take it over. With ``what`` (the commit about to be made), the stored
        lease is read too: a commit is refused unless it is still this acquisition (the generation
        check: a run whose lease was replaced writes nothing more)."""
        if not self.lost and what is not None and self.token is not None:
            held = self.store.read()
            if held is None:
                self.lost = "the lease object is gone (deleted by hand?)"
            elif held[0].get("lease_id") != self.lease_id:
                info = held[0]
                self.lost = (f"taken over by {info.get('command', 'run')} run {info.get('run_id')} (generation "
                             f"{info.get('generation')}; ours was {self.generation})")
        if self.lost:
            raise LeaseError(f"--output {self.output}: this {self.command} run's lease is lost: {self.lost}; "
                             f"stopped before writing more" + (f" (refused to {what})" if what else ""))

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
