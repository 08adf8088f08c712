"""``xclip-index search | relabel | build-index``: registered by ``jobs.cli`` (``add_commands``).

    xclip-index search --index URI "query" [--limit N] [--where SQL] [--label L ...] [--label-match TEXT]
                       [--per-video] [--per-shot] [--rerank N] [--precision auto|fp32|bf16] [--json] [--html FILE]
    xclip-index relabel --index URI --labels NAME|FILE [--top-k K]
    xclip-index build-index --index URI

Exit status: 0 ok; 2 bad arguments; 3 the index or its model cannot be opened.
"""
from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_ARGS, EXIT_INDEX = 0, 2, 3


def add_commands(sub) -> None:
    s = sub.add_parser("search", help="text-to-video search over an index")
    s.add_argument("--index", required=True, metavar="URI", help="an xclip-index --output (local or s3://)")
    s.add_argument("query", help="the text to search for")
    s.add_argument("--limit", type=int, default=10)
    s.add_argument("--where", metavar="SQL", help="SQL filter on the segments columns, passed as is")
    s.add_argument("--label", action="append", metavar="L", help="keep clips labelled L; repeatable (any)")
    s.add_argument("--label-match", metavar="TEXT",
                   help="keep clips whose labels hold every word of TEXT (full text, any case)")
    s.add_argument("--per-video", action="store_true", help="the best clip per video only")
    s.add_argument("--per-shot", action="store_true",
                   help="search shots (mean of each shot's clips; needs an index run with --segments shots)")
    s.add_argument("--rerank", type=int, metavar="N", help="rescore the top N exactly (needs prompt features)")
    s.add_argument("--model", metavar="SOURCE", help="the index's checkpoint, if not where the run found it")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="fp32",
                   help="query encoding: fp32 (default, exact), bf16 (a bf16 copy of the text tower, ~2x "
                        "faster, near ties may swap), auto (bf16 on CUDA or a CPU with native bf16)")
    s.add_argument("--json", action="store_true", help="print the hits as a JSON list")
    s.add_argument("--html", metavar="FILE", help="write a self-contained HTML page of the hits")
    s.set_defaults(func=search_main)
    r = sub.add_parser("relabel", help="recompute labels from stored data (no decoding)")
    r.add_argument("--index", required=True, metavar="URI")
    r.add_argument("--labels", required=True, metavar="NAME|FILE", help="built-in label set or a label file")
    r.add_argument("--top-k", type=int)
    r.add_argument("--model", metavar="SOURCE")
    r.set_defaults(func=relabel_main)
    b = sub.add_parser("build-index", help="build the ANN and scalar indexes of an index's tables")
    b.add_argument("--index", required=True, metavar="URI")
    b.set_defaults(func=build_index_main)


def _fail(code: int, msg: str) -> int:
    print(f"xclip-index: error: {msg}", file=sys.stderr)
    return code


def search_main(args: argparse.Namespace) -> int:
    from xclip_search.index import IndexError_, open_index

    try:
        idx = open_index(args.index, model=args.model, precision=args.precision)
    except IndexError_ as e:
        return _fail(EXIT_INDEX, str(e))
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
    except (ValueError, IndexError_) as e:
        return _fail(EXIT_ARGS, str(e))
    if args.html:
        from xclip_search.html import write_html

        write_html(idx, args.query, hits, args.html)
    if args.json:
        print(json.dumps([{k: v for k, v in h.items()} for h in hits], default=str))
    elif not args.html:
        for i, h in enumerate(hits, 1):
            print(f"{i:3d}. {h['score']:.4f}  {h['uri']}  [{h['start_s']:.2f}s - {h['end_s']:.2f}s]  "
                  f"{', '.join(h['labels'] or [])}")
    return EXIT_OK


def relabel_main(args: argparse.Namespace) -> int:
    from xclip_search.index import IndexError_
    from xclip_search.relabel import relabel

    try:
        result = relabel(args.index, args.labels, top_k=args.top_k, model=args.model)
    except IndexError_ as e:
        return _fail(EXIT_INDEX, str(e))
    except (ValueError, FileNotFoundError) as e:
        return _fail(EXIT_ARGS, f"--labels {args.labels}: {e}")
    print(result.format())
    return EXIT_OK


def build_index_main(args: argparse.Namespace) -> int:
    from xclip_search.indexes import build_indexes

    try:
        report = build_indexes(args.index)
    except FileNotFoundError as e:
        return _fail(EXIT_INDEX, str(e))
    print(json.dumps(report, indent=2))
    return EXIT_OK
