"""``open_output(uri, mode=..., command=...)``: the one way into an output's tables and files.

    mode="r"   read: tables, manifests; takes no lease
    mode="w"   write: takes the output lease first (``xclip_store.lease``; ``LeaseError``, exit 7,
               when another run holds it); every commit goes through ``Output.commit``, which checks
               that the lease is still this acquisition before committing, retries transient errors
               and LanceDB commit conflicts (on the latest table version), and says a failure in one
               line (``OutputError``)

Tables. A table folder without any version (what a disk-full failure during the very first
commit leaves) is absent: readers do not list it and a writer creates the table over it.
A table that cannot be opened or read (a deleted data file, a truncated manifest) raises
``DamagedTableError`` naming the table and the ``xclip-index restore`` command (``xclip_store.restore``).

Files. ``write_text`` writes small files (run manifests, reports) atomically: local files are
written aside and renamed over the old one; an S3 object is replaced by one PUT. A reader sees the
old content or the new one, never a part.

Entry points that write (``relabel``, ``moderate``) wear ``@leased(command, uri_arg=...)``: the
call holds the lease for its whole duration, and the body finds its ``Output`` with ``held(uri)``
(and calls ``check_lease(uri, what)`` or ``held(uri).commit(what, fn, table=tbl)`` for each commit).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import uuid

from xclip_core import storage
from xclip_store.errors import DamagedTableError, LeaseError, OutputError
from xclip_store.lease import Lease, LeaseConfig
from xclip_store.manifests import restore_hint
from xclip_store.retry import PROGRAMMING_ERRORS, commit_retry, retry, short_error

log = logging.getLogger(__name__)

MODES = ("r", "w")
COMMANDS = ("run", "relabel", "moderate", "build-index", "restore", "write")
_MAX_U64 = 2 ** 64 - 1

_held: dict[str, "Output"] = {}  # write outputs this process holds, by URI (``held``)
_held_lock = threading.Lock()


def _key(uri: str) -> str:
    return str(uri).rstrip("/")


def held(uri: str) -> "Output | None":
    """The write ``Output`` this process holds on ``uri`` (inside ``@leased`` / ``open_output(mode="w")``)."""
    with _held_lock:
        return _held.get(_key(uri))


def check_lease(uri: str, what: str) -> None:
    """Before a commit to ``uri``: raise ``LeaseError`` unless this process holds its lease, still."""
    out = held(uri)
    if out is None:
        raise LeaseError(f"--output {uri}: refused to {what}: this process does not hold the output lease "
                         "(open the output with xclip_store.open_output(..., mode='w') first)")
    out.check(what)


def open_output(uri: str, *, mode: str = "r", command: str = "run", run_id: str | None = None,
                lease: LeaseConfig = LeaseConfig()) -> "Output":
    """Open the output at ``uri`` (local folder or ``s3://``). ``mode="w"`` takes the lease for
    ``command`` (one of ``COMMANDS``) now; release it with ``close()`` or a ``with`` block."""
    if mode not in MODES:
        raise ValueError(f"open_output: mode must be one of {MODES}, got {mode!r}")
    if command not in COMMANDS:
        raise ValueError(f"open_output: command must be one of {COMMANDS}, got {command!r}")
    if not uri:
        raise ValueError("open_output: an output location is required")
    run_id = run_id or f"{command}-{uuid.uuid4().hex[:8]}"
    taken = Lease(uri, run_id, lease, command=command).acquire() if mode == "w" else None
    out = Output(uri, mode=mode, command=command, run_id=run_id, lease=taken)
    if taken is not None:
        with _held_lock:
            _held[_key(uri)] = out
    return out


def output_exists(uri: str) -> bool:
    """True when ``uri`` holds an output (its ``lancedb/`` or ``runs/``): commands other than ``run``
    take no lease on a location that is no index (no lock file, no folder made by a typo); they
    fail with their own "no index there" error."""
    import pyarrow.fs as pafs

    fs, base = storage.pyarrow_filesystem(uri)
    infos = retry(lambda: fs.get_file_info([f"{base.rstrip('/')}/lancedb", f"{base.rstrip('/')}/runs"]),
                  what="look for the output")
    if any(i.type != pafs.FileType.NotFound for i in infos):
        return True
    if storage.is_s3(uri):  # S3 has no folders: look for any object under them
        sel = pafs.FileSelector(f"{base.rstrip('/')}/runs", allow_not_found=True)
        return bool(retry(lambda: fs.get_file_info(sel), what="look for the output"))
    return False


def leased(command: str, *, uri_arg: str):
    """Decorator of an entry function that writes the output named by its argument ``uri_arg``:
    the call holds the output lease (``open_output(mode="w", command=command)``) from start to
    end. The lease is not re-entrant: a call made while this process (any thread) holds that
    output's lease is refused like any other. A call on a location that holds no output takes no
    lease (``output_exists``)."""
    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            uri = sig.bind_partial(*args, **kwargs).arguments[uri_arg]
            if not output_exists(uri):
                return fn(*args, **kwargs)
            with open_output(uri, mode="w", command=command):
                return fn(*args, **kwargs)
        return call
    return wrap


def manifest_name(version: int) -> str:
    """File name of a LanceDB table version's manifest (v2 naming: u64::MAX - version)."""
    return f"{_MAX_U64 - int(version):020d}.manifest"


def manifest_version(name: str) -> int | None:
    """Version of a ``_versions/`` file name (both Lance namings), None when not a manifest."""
    stem, dot, ext = name.partition(".")
    if ext != "manifest" or not stem.isdigit():
        return None
    n = int(stem)
    return _MAX_U64 - n if len(stem) == 20 and n > 2 ** 63 else n


class Output:
    """An opened output (see module doc). Use ``open_output``; ``Output(uri, mode="w", lease=None)``
    is an unleased writer for callers that hold the lease some other way (tests)."""

    def __init__(self, uri: str, *, mode: str = "r", command: str = "write", run_id: str | None = None,
                 lease: Lease | None = None):
        self.uri, self.mode, self.command, self.run_id, self.lease = uri, mode, command, run_id, lease
        self.db_uri = storage.join(uri, "lancedb")
        self._db = None
        self.fs, self.base = storage.pyarrow_filesystem(uri)

    # ------------------------------------------------------------ lease
    def check(self, what: str | None = None) -> None:
        """Raise ``LeaseError`` when this output's lease is lost (with ``what``: also when the stored
        lease is no longer this acquisition). Read-only outputs may not commit."""
        if self.mode != "w":
            raise LeaseError(f"{self.uri}: opened read-only, refused to {what or 'write'}")
        if self.lease is not None:
            self.lease.check(what)

    def close(self) -> None:
        """Release the lease (write mode)."""
        if self.lease is not None:
            with _held_lock:
                if _held.get(_key(self.uri)) is self:
                    del _held[_key(self.uri)]
            self.lease.release()

    release = close

    def __enter__(self) -> "Output":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ tables
    @property
    def db(self):
        if self._db is None:
            import lancedb

            try:
                self._db = lancedb.connect(self.db_uri, storage_options=storage.lancedb_storage_options(self.uri))
            except Exception as e:
                raise OutputError(f"--output {self.uri}: cannot open or create the LanceDB database "
                                  f"({short_error(e)})") from None
        return self._db

    def _table_path(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/lancedb/{name}.lance"

    def versions_on_disk(self, name: str) -> list[int]:
        """Versions of table ``name`` that have a manifest file (newest last); [] for none."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(f"{self._table_path(name)}/_versions", allow_not_found=True)
        infos = retry(lambda: self.fs.get_file_info(sel), what=f"list versions of {name}")
        return sorted(v for v in (manifest_version(i.base_name) for i in infos if i.type == pafs.FileType.File)
                      if v is not None)

    def table_names(self) -> set[str]:
        """Tables of the output; a table folder with no version is absent."""
        try:
            listed = set(retry(lambda: self.db.list_tables().tables, what="list tables"))
        except (OutputError, *PROGRAMMING_ERRORS):
            raise
        except Exception as e:
            raise OutputError(f"--output {self.uri}: cannot list the LanceDB tables ({short_error(e)})") from None
        return {n for n in listed if self.versions_on_disk(n)}

    def open_table(self, name: str, *, create_schema=None):
        """Table ``name``; when it is absent: created with ``create_schema`` (write mode), else None."""
        if self.versions_on_disk(name):
            try:
                return retry(lambda: self.db.open_table(name), what=f"open {name}")
            except PROGRAMMING_ERRORS:
                raise
            except Exception as e:  # the newest manifest cannot be read: a run recording it is no cure
                raise self.damaged(name, e, bad_version=self.versions_on_disk(name)[-1]) from None
        if create_schema is None:
            return None
        self.check(f"create table {name}")
        import pyarrow.fs as pafs

        leftover = self._table_path(name)
        if not storage.is_s3(self.uri) and self.fs.get_file_info(leftover).type != pafs.FileType.NotFound:
            log.warning("%s: table folder %s has no version (a failed first commit): created anew",
                        self.uri, name)  # nothing in it to keep
            self.fs.delete_dir(leftover)
        try:
            return retry(lambda: self.db.create_table(name, schema=create_schema, exist_ok=True),
                         what=f"create {name}")
        except PROGRAMMING_ERRORS:
            raise
        except Exception as e:
            raise OutputError(f"--output {self.uri}: cannot create table {name} ({short_error(e)})") from None

    def table(self, name: str):
        """Table ``name`` (None when absent); in write mode a ``GuardedTable``: each of its commits
        is an ``Output.commit`` (lease check first, retries)."""
        from xclip_store.guarded import GuardedTable

        tbl = self.open_table(name)
        return GuardedTable(tbl, self, name) if tbl is not None and self.mode == "w" else tbl

    def damaged(self, name: str, e: BaseException, *, bad_version: int | None = None) -> DamagedTableError:
        """The one-line error for table ``name`` that cannot be opened (its version ``bad_version``)
        or read."""
        return DamagedTableError(f"{self.uri}: table {name!r} is damaged or incomplete ({short_error(e, 160)}); "
                                 f"{restore_hint(self, name, bad_version)}")

    def read(self, name: str, fn, *, what: str):
        """``fn()`` reading table ``name``, retried; an unreadable table raises ``DamagedTableError``."""
        try:
            return retry(fn, what=what)
        except PROGRAMMING_ERRORS:
            raise
        except Exception as e:
            if _looks_damaged(e):
                raise self.damaged(name, e) from None
            raise OutputError(f"--output {self.uri}: cannot {what} ({short_error(e)})") from None

    def commit(self, what: str, fn, *, table=None) -> None:
        """One commit: lease check, then ``fn()`` retried (with ``table``: LanceDB commit conflicts are
        retried on its latest version); a failure is ``OutputError`` in one line."""
        self.check(what)
        try:
            if table is not None:
                commit_retry(table, fn, what=what)
            else:
                retry(fn, what=what)
        except (PROGRAMMING_ERRORS + (LeaseError,)):
            raise
        except Exception as e:
            raise OutputError(f"--output {self.uri}: cannot {what} ({short_error(e)}); "
                              "nothing after the last commit is lost: rerun the job to finish") from None

    # ------------------------------------------------------------ files
    def path(self, relpath: str) -> str:
        return f"{self.base.rstrip('/')}/{relpath}"

    def uri_of(self, relpath: str) -> str:
        path = self.path(relpath)
        return ("s3://" + path) if storage.is_s3(self.uri) else path

    def write_text(self, relpath: str, text: str, *, check: bool = True) -> str:
        """Write a small file under the output atomically (see module doc); returns its URI.
        ``check=False``: no lease check (the failure record of a run whose lease is lost)."""
        if check:
            self.check(f"write {relpath}")
        path = self.path(relpath)
        try:
            write_atomic(self.fs, path, text.encode("utf-8"), local=not storage.is_s3(self.uri))
        except Exception as e:
            raise OutputError(f"--output {self.uri}: cannot write {relpath} ({short_error(e)})") from None
        return self.uri_of(relpath)

    def read_text(self, relpath: str) -> str | None:
        """A small file under the output, or None when it does not exist."""
        path = self.path(relpath)
        try:
            with self.fs.open_input_stream(path) as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None


def write_atomic(fs, path: str, data: bytes, *, local: bool) -> None:
    """``data`` to ``path`` on pyarrow filesystem ``fs``: local files via a temporary file and a
    rename; object stores by one PUT (atomic there)."""
    if not local:
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)  # rename(2): replaces the old file in one step
    except BaseException:
        with contextlib.suppress(Exception):
            fs.delete_file(tmp)
        raise


def _looks_damaged(e: BaseException) -> bool:
    text = str(e)
    return "LanceError(IO)" in text or "Not found" in text or "corrupt" in text.lower() or \
        "file size is too small" in text


def side_table(uri: str, name: str, schema, *, create: bool = True):
    """Table ``name`` of the output at ``uri`` for the packages above the store (``moderation``,
    ``frame_pdq``, ``reviews``): created with ``schema`` when absent and ``create`` (else None).
    Inside a leased command (``run``, ``moderate``) it comes from the leased output, so each commit
    checks the lease; otherwise (the append-only ``reviews`` of ``serve``, tests) from an unleased
    one. Either way its commits are ``Output.commit``: retried, one-line errors."""
    out = held(uri) or Output(uri, mode="w", command="write")
    if name not in out.table_names():
        if not create:
            return None
        out.open_table(name, create_schema=schema)
    return out.table(name)
