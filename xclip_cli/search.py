"""``xclip-index search``: text-to-video search over an index.

    xclip-index search --index URI "query" [--limit N] [--where SQL] [--label L ...] [--label-match TEXT]
                       [--per-video] [--per-shot] [--rerank N] [--precision auto|fp32|bf16] [--json]
                       [--html FILE]

Exit status (xclip_cli.errors): 0 ok; 2 bad arguments (a --limit out of range, a --where that is
not one expression, an --html path in no writable folder); 4 the index or its model cannot be opened.
"""
from __future__ import annotations

import argparse
import json
import logging

from xclip_cli.errors import EXIT_CONFIG, EXIT_OK, CliError, check_writable, writing

NAME = "search"
LOG_LEVEL = logging.WARNING


def bounded_int(lo: int, hi: int):
    """An argparse type: an int in [lo, hi] (argparse's own one-line error otherwise, exit 2)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"expected {lo} to {hi}, got {n}")
        return n
    return parse


def add_parser(sub) -> argparse.ArgumentParser:
    from xclip_search.query import MAX_LIMIT

    s = sub.add_parser("search", help="text-to-video search over an index")
    s.add_argument("--index", required=True, metavar="URI", help="an xclip-index --output (local or s3://)")
    s.add_argument("query", help="the text to search for")
    s.add_argument("--limit", type=bounded_int(1, MAX_LIMIT), default=10)
    s.add_argument("--where", metavar="SQL", help="SQL filter on the segments columns (one expression)")
    s.add_argument("--label", action="append", metavar="L", help="keep clips labelled L; repeatable (any)")
    s.add_argument("--label-match", metavar="TEXT",
                   help="keep clips whose labels hold every word of TEXT (full text, any case)")
    s.add_argument("--per-video", action="store_true", help="the best clip per video only")
    s.add_argument("--per-shot", action="store_true",
                   help="search shots (mean of each shot's clips; needs an index run with --segments shots)")
    s.add_argument("--rerank", type=bounded_int(1, MAX_LIMIT), metavar="N",
                   help="rescore the top N exactly (needs prompt features)")
    s.add_argument("--model", metavar="SOURCE", help="the index's checkpoint, if not where the run found it")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32",
                   help="query encoding: fp32 (default, exact), bf16 (a bf16 copy of the text tower, ~2x "
                        "faster, near ties may swap), auto (bf16 on CUDA or a CPU with native bf16)")
    s.add_argument("--json", action="store_true", help="print the hits as a JSON list")
    s.add_argument("--html", metavar="FILE", help="write a self-contained HTML page of the hits")
    return s


def main(args: argparse.Namespace) -> int:
    from xclip_search.index import IndexError_, open_index

    check_writable("--html", args.html)  # before the model loads
    idx = open_index(args.index, model=args.model, precision=args.precision)
    try:
        q = idx.search(args.query).limit(args.limit)
        if args.where:
            q = q.where(args.where)
        if args.label:
            q = q.labels_any(args.label)
        if args.label_match:
            q = q.labels_match(args.label_match)
        if args.per_shot:
            q = q.per_shot()
        if args.per_video:
            q = q.per_video()
        if args.rerank:
            q = q.rerank(args.rerank)
        hits = q.to_list()
    except (ValueError, IndexError_) as e:  # the query's options (e.g. --rerank without prompt features)
        raise CliError(EXIT_CONFIG, str(e)) from None
    if args.html:
        from xclip_search.html import write_html

        with writing("--html", args.html):
            write_html(idx, args.query, hits, args.html)
    if args.json:
        print(json.dumps([{k: v for k, v in h.items()} for h in hits], default=str))
    elif not args.html:
        for i, h in enumerate(hits, 1):
            print(f"{i:3d}. {h['score']:.4f}  {h['uri']}  [{h['start_s']:.2f}s - {h['end_s']:.2f}s]  "
                  f"{', '.join(h['labels'] or [])}")
    return EXIT_OK
