"""Retry transient storage errors with backoff, and say storage errors in one line.

Used by the writer (Parquet and LanceDB commits), the output lease and input
listing. A transient error is a throttle, a 5xx or a dropped/refused/timed-out
connection; anything else (403, 404, a bug in us such as ``TypeError``) is
raised at once.
"""
from __future__ import annotations

import logging
import re
import time

log = logging.getLogger(__name__)

# errors that are bugs, never storage trouble: never retried, never reworded
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, KeyError, IndexError, AssertionError, ImportError)

_TRANSIENT = re.compile(
    r"\b(500|502|503|504)\b|InternalError|ServiceUnavailable|SlowDown|Throttl|RequestTimeout|"
    r"connection (reset|refused|aborted|closed)|broken pipe|timed? ?out|IncompleteRead|"
    r"dispatch failure|error sending request|end of file|unexpected eof|Retryable commit conflict",
    re.IGNORECASE)
_S3_CODES = ("NoSuchBucket", "NoSuchKey", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
             "ExpiredToken", "InvalidBucketName", "PreconditionFailed", "SlowDown", "InternalError",
             "ServiceUnavailable", "RequestTimeout")


def is_transient(e: BaseException) -> bool:
    if isinstance(e, PROGRAMMING_ERRORS):
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    code = s3_error_code(e)
    if code in ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"):
        return True
    if code:
        return False
    return bool(_TRANSIENT.search(str(e)))


def s3_error_code(e: BaseException) -> str | None:
    """The S3 error code of a boto3/pyarrow/LanceDB error, when it names one."""
    resp = getattr(e, "response", None)
    if isinstance(resp, dict) and resp.get("Error", {}).get("Code"):
        return str(resp["Error"]["Code"])
    text = str(e)
    m = re.search(r"<Code>(\w+)</Code>", text)
    if m:
        return m.group(1)
    for code in _S3_CODES:
        if code in text:
            return code
    if "specified bucket does not exist" in text:
        return "NoSuchBucket"
    if isinstance(e, PermissionError) or "Access Denied" in text:
        return "AccessDenied"
    if re.search(r"\b403\b|Forbidden", text):
        return "AccessDenied"
    if re.search(r"\b404\b", text):
        return "NotFound"
    if re.search(r"connection refused|dns error|failed to lookup|Name or service not known|"
                 r"Could not connect to the endpoint", text, re.IGNORECASE):
        return "EndpointUnreachable"
    return None


def short_error(e: BaseException, limit: int = 240) -> str:
    """One line for a storage error: its S3 code when known, then the first line of the message with
    Rust debug structures and source paths cut off (LanceDB errors embed both)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.split(r",?\s*/[\w./-]+\.rs:\d+", text)[0]                # ", /root/.cargo/.../x.rs:12:34"
    text = re.split(r"\s(?:Some|Generic|source:)\s*[\(\{]", text)[0]   # debug structs
    text = re.sub(r"\s+", " ", text).strip(" ,:")
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    code = s3_error_code(e)
    head = f"{code}: " if code and code not in text else ""
    return f"{head}{type(e).__name__}: {text}"


def retry(fn, *, what: str, attempts: int = 5, base_delay_s: float = 0.2, max_delay_s: float = 5.0,
          before_retry=None):
    """Call ``fn()``; on a transient error wait ``base_delay_s * 2**i`` (capped) and try again,
    up to ``attempts`` calls in all. The last error (or a non-transient one) is raised as is.
    ``before_retry()`` runs before each new try (e.g. ``commit_retry``: refresh a LanceDB table)."""
    for i in range(attempts):
        if i and before_retry is not None:
            before_retry()
        try:
            return fn()
        except Exception as e:
            if i == attempts - 1 or not is_transient(e):
                raise
            delay = min(max_delay_s, base_delay_s * 2 ** i)
            log.warning("%s: transient error, retry %d/%d in %.1fs: %s", what, i + 1, attempts - 1, delay,
                        short_error(e))
            time.sleep(delay)


def is_commit_conflict(e: BaseException) -> bool:
    return "commit conflict" in str(e).lower()


def commit_retry(tbl, fn, *, what: str, attempts: int = 5):
    """``retry`` for a LanceDB commit on ``tbl``: a commit conflict (another process committed a
    compaction or an index since this handle last read the table) is retried on the latest version
    (``checkout_latest``): retrying on the stale handle conflicts again, every time."""
    def refresh():
        try:
            tbl.checkout_latest()
        except Exception as e:  # the next try reports the storage trouble
            log.warning("%s: cannot refresh the table before retrying: %s", what, short_error(e))
    return retry(fn, what=what, attempts=attempts, before_retry=refresh)
