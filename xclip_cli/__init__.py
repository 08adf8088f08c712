"""The ``xclip-index`` command line: one module per subcommand (xclip_cli.cli.COMMANDS), one
error contract (xclip_cli.errors: exit codes, redaction, the one ``xclip-index: error:`` line).

The CLI is the top of the import direction: it may import every package; none imports it.
"""
from __future__ import annotations

from xclip_cli.errors import (EXIT_CONFIG, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_LOCKED,  # noqa: F401
                              EXIT_MODEL, EXIT_OK, EXIT_OUTPUT, EXIT_PIPELINE, EXIT_TERMINATED, redact)


def main(argv: list[str] | None = None) -> int:
    """``xclip-index ARGV...``: returns the exit code."""
    from xclip_cli.cli import main as _main

    return _main(argv)
