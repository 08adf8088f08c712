"""The one error contract of every ``xclip-index`` subcommand.

Every failure is ONE line on stderr, ``xclip-index: error: <what happened and the fix>``, with
credentials redacted, and one of these exit codes (the same for every subcommand):

    0    done (``run``: also when some videos failed: they are rows with ``status = failed``)
    1    the pipeline broke down, or Ray could not start (``run``)
    2    bad arguments, options, config, policy or label file; a ``--where`` filter that is not one
         expression
    3    the model or the label set cannot be loaded (``run``)
    4    an index/output cannot be opened, read or written: missing or not an xclip-index output
         (every command says so with this code), a missing bucket, a damaged table, a full disk,
         a file a flag names (``--html``, ``--review-out``) that cannot be written, or an index
         built with another model
    5    internal error: a bug in xclip-index or a dependency (or the breaker tripped in ``run``);
         set XCLIP_INDEX_TRACEBACK=1 to also print the traceback
    6    an input cannot be listed (S3 NoSuchBucket, AccessDenied, endpoint unreachable)
    7    another process holds the output's lease: nothing was written
    130  interrupted (Ctrl-C, SIGINT)
    143  terminated (SIGTERM): what was committed stays; rerun the same command to resume

``EXIT_CODES`` is the one map from exception classes to exit codes. Classes are named by
``module.QualName`` so that matching needs no import of torch, Ray or LanceDB;
tests/test_xclip_cli_errors.py checks that every entry names a class that exists.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys

EXIT_OK, EXIT_PIPELINE, EXIT_CONFIG, EXIT_MODEL, EXIT_OUTPUT = 0, 1, 2, 3, 4
EXIT_INTERNAL, EXIT_INPUT, EXIT_LOCKED = 5, 6, 7
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM (the shell's convention)
EXIT_ARGS, EXIT_INDEX = EXIT_CONFIG, EXIT_OUTPUT  # the names the search commands used

# exception class (module.QualName, matched along the raised exception's MRO) -> exit code
EXIT_CODES: dict[str, int] = {
    "jobs.config.ConfigError": EXIT_CONFIG,
    "moderation.policy.PolicyError": EXIT_CONFIG,
    "jobs.encoder.ModelError": EXIT_MODEL,
    "xclip_search.index.IndexError_": EXIT_OUTPUT,
    "moderation.recompute.ModerateError": EXIT_OUTPUT,
    "xclip_search.labelstate.RelabelStateError": EXIT_OUTPUT,
    "jobs.errors.InternalError": EXIT_INTERNAL,  # before PipelineError: it is one
    "jobs.errors.PipelineError": EXIT_PIPELINE,
    "jobs.reader.InputError": EXIT_INPUT,
    # the output store: RestoreError and DamagedTableError are OutputErrors
    "xclip_store.errors.OutputError": EXIT_OUTPUT,
    "xclip_store.errors.LeaseError": EXIT_LOCKED,
    "xclip_store.errors.OutputMismatchError": EXIT_CONFIG,
    # anything else that reads or writes (no such file, a full disk, S3 NoSuchBucket via s3fs/LanceDB)
    "builtins.OSError": EXIT_OUTPUT,
}

# LanceDB reports I/O failures (a full disk, a missing data file) as RuntimeError/ValueError whose
# text carries the Rust error: these are storage failures (exit 4), not bugs
_STORAGE_TEXT = re.compile(r"LanceError\(IO\)|\(os error \d+\)|No space left on device")

_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@", re.I)


class CliError(Exception):
    """A failure a command words itself: ``CliError(EXIT_..., "what and the fix")``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, so that no ``except Exception`` turns it into a failed
    row: the run's own ``finally`` blocks record the manifest and release the lease."""


def redact(text: str) -> str:
    """Remove credential values (AWS secret/session token, URL passwords) from a message."""
    for name in _SECRET_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _URL_USERINFO.sub(r"\1***@", text)


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def setup_logging(level: int) -> None:
    """Log to stderr through the redaction filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactFilter())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[handler])  # a no-op where logging is set up already (pytest)


def exit_code(exc: BaseException) -> int | None:
    """The exit code ``EXIT_CODES`` gives ``exc`` (None: not in the map, i.e. a bug)."""
    if isinstance(exc, CliError):
        return exc.code
    for cls in type(exc).__mro__:
        code = EXIT_CODES.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    if _STORAGE_TEXT.search(str(exc)):
        return EXIT_OUTPUT
    return None


def _short(exc: BaseException) -> str:
    """Type, S3 error code and first line, without LanceDB's Rust debug structures and paths."""
    from xclip_store.retry import short_error
    return short_error(exc, limit=400)


def message(exc: BaseException) -> str:
    """The error line's text for ``exc``: its own text for our errors (they say the fix), the
    short form (type, S3 code, first line) for OS errors and bugs."""
    code = exit_code(exc)
    if code is None:
        return (f"internal error (a bug in xclip-index or a dependency): {_short(exc)} "
                "(XCLIP_INDEX_TRACEBACK=1 prints the traceback)")
    if type(exc).__module__ == "builtins":  # OS errors, LanceDB's I/O errors
        return f"cannot read or write the index/output: {_short(exc)}"
    return str(exc).strip() or type(exc).__name__


def fail(code: int, msg: str) -> int:
    """Print the one error line (the first line of ``msg``; any further lines, e.g. a failed run's
    summary, go to stdout); returns ``code``."""
    first, _, rest = redact(msg).strip().partition("\n")
    if rest.strip():
        print(rest.strip(), flush=True)
    print(f"xclip-index: error: {' '.join(first.split())}", file=sys.stderr, flush=True)
    return code


def handle(exc: BaseException) -> int:
    """The exit code for an exception that ended a command, after printing its one line."""
    if isinstance(exc, Terminated):
        return fail(EXIT_TERMINATED, "terminated (SIGTERM): committed work is kept; rerun the same "
                                     "command to resume")
    if isinstance(exc, KeyboardInterrupt):
        return fail(EXIT_INTERRUPTED, "interrupted: committed work is kept; rerun the same command to resume")
    code = exit_code(exc)
    if code is None:
        if os.environ.get("XCLIP_INDEX_TRACEBACK"):
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        code = EXIT_INTERNAL
    return fail(code, message(exc))


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, _second_sigterm)
    raise Terminated()


def _second_sigterm(signum, frame):  # a second SIGTERM while cleaning up: leave at once, still one line
    fail(EXIT_TERMINATED, "terminated (second SIGTERM during clean-up); rerun the same command to resume")
    os._exit(EXIT_TERMINATED)


def install_sigterm():
    """SIGTERM raises ``Terminated`` in the main thread (jobs.cluster.connect keeps this handler
    when Ray starts, instead of Ray's native stack dump); returns the handler it replaced (None
    outside the main thread, where signals cannot be handled)."""
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        return None


def restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def writing(flag: str, path: str):
    """OS errors while writing the file a flag names become one line naming the flag (exit 4)."""
    try:
        yield
    except OSError as e:
        raise CliError(EXIT_OUTPUT, f"{flag} {path}: cannot write it ({_os_text(e)}); "
                                    "give a path in an existing, writable folder") from None


def check_writable(flag: str, path: str | None, *, makes_folders: bool = False) -> None:
    """Before any work: the local file a flag names must be creatable (``makes_folders``: its
    writer creates missing folders, e.g. ``--review-out``). S3 paths are checked when written."""
    if not path or "://" in path:
        return
    if os.path.isdir(path):
        raise CliError(EXIT_CONFIG, f"{flag} {path}: is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    while makes_folders and not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)  # the first folder that exists: the writer creates the rest
    if not os.path.exists(folder):
        raise CliError(EXIT_CONFIG, f"{flag} {path}: no such folder {folder!r}; create it or give another path")
    if not os.path.isdir(folder):
        raise CliError(EXIT_CONFIG, f"{flag} {path}: {folder!r} is a file, not a folder; give another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(EXIT_CONFIG, f"{flag} {path}: the folder {folder!r} is not writable")


def _os_text(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__
