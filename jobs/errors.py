"""The run's own failures (``jobs.runner`` raises them; ``xclip_cli.errors`` maps them to exit codes)."""
from __future__ import annotations


class PipelineError(RuntimeError):
    """The Ray pipeline broke down (results so far are written, rest marked failed)."""


class InternalError(PipelineError):
    """A bug in us or a dependency (an exception that is not a media or I/O error)
    or the breaker tripped (``jobs.breaker``): the run stopped. Results so far are
    written; inputs that did not finish get NO row (they are not known to be bad),
    so a rerun (incremental by default) does them."""
