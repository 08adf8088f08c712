"""``xclip-index``: one parser, one module per subcommand, one error contract.

Each subcommand module (``COMMANDS``) has ``NAME``, ``LOG_LEVEL``, ``add_parser(sub)`` and
``main(args) -> int``; it raises on failure and ``main`` below turns every exception into the one
``xclip-index: error: ...`` line and the exit code of ``xclip_cli.errors.EXIT_CODES`` (SIGTERM
and Ctrl-C included). Adding a subcommand: a module here with those four names, listed in
``COMMANDS``, and a tests/test_xclip_cli_<module>.py.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from xclip_cli import errors

COMMANDS = ("run", "search", "relabel", "build_index", "moderate", "restore", "hash_videos", "serve")  # modules of xclip_cli


def commands() -> dict:
    """{subcommand name: its module}."""
    mods = [importlib.import_module(f"xclip_cli.{m}") for m in COMMANDS]
    return {m.NAME: m for m in mods}


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error: ``xclip-index: error: search: argument --limit: ...`` (exit 2)."""

    def error(self, message: str):
        where = self.prog.removeprefix("xclip-index").strip()
        errors.fail(errors.EXIT_CONFIG, f"{where + ': ' if where else ''}{message} (see `{self.prog} --help`)")
        sys.exit(errors.EXIT_CONFIG)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xclip-index", description="Index videos with X-CLIP into Parquet and LanceDB.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, mod in commands().items():
        mod.add_parser(sub).set_defaults(_command=name)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit code (argparse exits 2 itself on bad arguments)."""
    previous = None
    try:
        previous = errors.install_sigterm()
        args = parser().parse_args(argv)  # SystemExit(2) with argparse's own one-line error
        mod = commands()[args._command]
        errors.setup_logging(mod.LOG_LEVEL)
        return mod.main(args)
    except SystemExit:
        raise
    except BrokenPipeError as e:  # `xclip-index search ... | head`: the reader left; not a failure
        if _stdout_closed():
            return errors.EXIT_OK
        return errors.handle(e)
    except BaseException as e:  # noqa: BLE001  every failure (SIGTERM, Ctrl-C, bugs) ends in one line
        return errors.handle(e)
    finally:
        errors.restore_sigterm(previous)


def _stdout_closed() -> bool:
    try:
        sys.stdout.flush()
        return False
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return True


def entry() -> None:
    """The console script ``xclip-index``."""
    sys.exit(main())
