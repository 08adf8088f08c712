"""``xclip-index moderate``: recompute moderation decisions from stored features (no decoding).

    xclip-index moderate --index URI --policy FILE [--review-out URI] [--run-id ID]
                         [--blocklist URI | --drop-blocklist]

Exit status (xclip_cli.errors): 0 done, 2 bad policy or a --review-out that cannot be created,
4 the index or its model cannot be used, or the review queue could not be written (the message
says the fix), 7 the index is leased by another process.
"""
from __future__ import annotations

import argparse
import logging

from xclip_cli.errors import EXIT_OK, check_writable

NAME = "moderate"
LOG_LEVEL = logging.INFO


def add_parser(sub) -> argparse.ArgumentParser:
    m = sub.add_parser("moderate", help="recompute moderation decisions from stored features (no decoding)")
    m.add_argument("--index", required=True, metavar="URI", help="an index written by `run` (local or s3://)")
    m.add_argument("--policy", required=True, metavar="FILE", help="moderation policy YAML (or 'example')")
    m.add_argument("--review-out", metavar="URI", help="JSON lines of block/review/error decisions, most severe first")
    m.add_argument("--run-id", help="run id of the moderation rows (default: moderate-<UTC time>-<random>)")
    m.add_argument("--blocklist", metavar="URI", help="known-bad videos, .vpdq and .pdq files (a file, folder or "
                                                      "s3:// prefix), matched against the stored PDQ hashes")
    m.add_argument("--drop-blocklist", action="store_true",
                   help="without --blocklist: drop the earlier known-bad matches (default: kept)")
    return m


def main(args: argparse.Namespace) -> int:
    from moderation.recompute import moderate

    check_writable("--review-out", args.review_out, makes_folders=True)  # before any work (S3: when written)
    result = moderate(args.index, args.policy, review_out=args.review_out, run_id=args.run_id,
                      blocklist=args.blocklist, drop_blocklist=args.drop_blocklist)
    print(result.format())
    if args.blocklist:
        print(f"blocklist {args.blocklist}: {result.matched} videos matched")
    elif result.kept:
        print(f"blocklist: kept the earlier known-bad matches of {result.kept} videos (--drop-blocklist drops them)")
    if result.review_items is not None:
        print(f"review queue: {result.review_items} items -> {args.review_out}")
    return EXIT_OK
