"""The run's own failures (``jobs.runner`` raises them; ``xclip_cli.errors`` maps them to exit codes)."""
from __future__ import annotations

import contextlib

from xclip_store.retry import PROGRAMMING_ERRORS, short_error


class PipelineError(RuntimeError):
    """The Ray pipeline broke down (results so far are written, rest marked failed)."""


class InternalError(PipelineError):
    """A bug in us or a dependency (an exception that is not a media or I/O error)
    or the breaker tripped (``jobs.breaker``): the run stopped. Results so far are
    written; inputs that did not finish get NO row (they are not known to be bad),
    so a rerun (incremental by default) does them."""


@contextlib.contextmanager
def ray_start_errors(*passthrough: type):
    """Ray cannot be started or reached inside the block: ``PipelineError`` (exit 1), in one line.
    Bugs (``PROGRAMMING_ERRORS``) and the ``passthrough`` exception types are raised as they are."""
    try:
        yield
    except (PROGRAMMING_ERRORS + passthrough):
        raise
    except Exception as e:  # noqa: BLE001 (whatever stops Ray from starting is the run's pipeline error)
        raise PipelineError(f"cannot start or reach Ray ({short_error(e)})") from None
