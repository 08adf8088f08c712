"""``xclip-index relabel``: recompute labels from stored data (no decoding).

    xclip-index relabel --index URI --labels NAME|FILE [--top-k K] [--model SOURCE]

Exit status (xclip_cli.errors): 0 done, 2 a label set that cannot be read, 4 the index or its
model cannot be used (or a full disk), 7 the index is leased by another process.
"""
from __future__ import annotations

import argparse
import logging

from xclip_cli.errors import EXIT_CONFIG, EXIT_OK, CliError

NAME = "relabel"
LOG_LEVEL = logging.INFO


def add_parser(sub) -> argparse.ArgumentParser:
    r = sub.add_parser("relabel", help="recompute labels from stored data (no decoding)")
    r.add_argument("--index", required=True, metavar="URI")
    r.add_argument("--labels", required=True, metavar="NAME|FILE", help="built-in label set or a label file")
    r.add_argument("--top-k", type=int)
    r.add_argument("--model", metavar="SOURCE")
    return r


def main(args: argparse.Namespace) -> int:
    from xclip_core.labels import load_labels
    from xclip_search.relabel import relabel

    try:  # the label set first: a bad --labels is a bad argument, not a failure of the index
        load_labels(args.labels)
    except (ValueError, OSError) as e:
        raise CliError(EXIT_CONFIG, f"--labels {args.labels}: {e}") from None
    try:
        result = relabel(args.index, args.labels, top_k=args.top_k, model=args.model)
    except ValueError as e:  # options that do not fit the label set (e.g. --top-k)
        raise CliError(EXIT_CONFIG, str(e)) from None
    print(result.format())
    return EXIT_OK
