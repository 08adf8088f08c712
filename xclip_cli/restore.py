"""``xclip-index restore``: check every table of an index out to the versions a run recorded.

    xclip-index restore --index URI --run RUN_ID

After a crash, a full disk or a damaged table, the run manifest ``runs/RUN_ID.json`` of the last
good run names each table's LanceDB version (``tables: {name: {"version": ...}}``); restoring all
tables together to those versions, then rerunning, gives a clean index (restoring one table alone
does not: its neighbours would still hold the later run's rows).

The work is ``xclip_store.restore(uri, run_id)`` (the store package owns the output; it takes the
output's lease like every writing command and raises one-line errors: ``LeaseError`` exit 7, a
missing or damaged table/manifest ``OutputError``/``DamagedTableError`` exit 4, an unknown run
exit 2). NOTE (issue 15 split): ``xclip_store`` is written on another branch (15a) at the same
time as this module; this module is written against that signature and is tested end to end
once both are merged (tests/test_xclip_cli_restore.py skips until ``xclip_store.restore`` exists).

Exit status (xclip_cli.errors): 0 restored; 2 no such run; 4 the index or a table cannot be
read or restored; 7 another process holds the index's lease.
"""
from __future__ import annotations

import argparse
import json
import logging

from xclip_cli.errors import EXIT_CONFIG, EXIT_OK, CliError

NAME = "restore"
LOG_LEVEL = logging.INFO


def add_parser(sub) -> argparse.ArgumentParser:
    r = sub.add_parser("restore", help="check every table out to the versions a run's manifest recorded")
    r.add_argument("--index", required=True, metavar="URI", help="an xclip-index --output (local or s3://)")
    r.add_argument("--run", required=True, metavar="RUN_ID", help="a finished run (runs/RUN_ID.json)")
    return r


def main(args: argparse.Namespace) -> int:
    try:
        from xclip_store import restore
    except ImportError:  # only before the store package is merged (see the module doc)
        raise CliError(EXIT_CONFIG, "restore: this build has no xclip_store.restore") from None
    try:
        result = restore(args.index, args.run)
    except KeyError as e:  # an unknown run id, if the store says so with a KeyError
        raise CliError(EXIT_CONFIG, f"--run {args.run}: {e.args[0] if e.args else 'no such run'}") from None
    except ValueError as e:  # an unknown run id or a mismatch: bad arguments (exit 2)
        raise CliError(EXIT_CONFIG, str(e)) from None
    if hasattr(result, "format"):
        print(result.format())
    elif isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    elif result is not None:
        print(result)
    return EXIT_OK
