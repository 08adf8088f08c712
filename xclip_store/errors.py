"""Errors of the output store; every message is one line that says the fix."""
from __future__ import annotations


class OutputError(RuntimeError):
    """The output location cannot be written (``xclip-index`` exit 4)."""


class LeaseError(RuntimeError):
    """Another run holds the output's lease, or ours was lost (``xclip-index`` exit 7)."""


class OutputMismatchError(ValueError):
    """An existing table does not match this job (another model or schema version): a setting
    problem, ``xclip-index`` exit 2 like ``jobs.config.ConfigError``."""


class DamagedTableError(OutputError):
    """A LanceDB table of the output cannot be read (a deleted data file, a truncated manifest);
    the message names the table and the ``xclip-index restore`` command."""
