"""``xclip-index build-index``: build the ANN and scalar indexes of an index's tables, or add
the rows written since to the existing ones.

    xclip-index build-index --index URI [--retrain]

An existing index gets only the rows it does not cover yet, as a delta index (no retraining: the
cost follows the delta, ``xclip_store.indexes.update_indexes``); a missing one is built.
``--retrain`` rebuilds every index from all rows instead (the vector index with parameters for
today's row count: do it when the table has grown a lot since the index was trained). A commit
conflict (another process compacted or indexed the table meanwhile) is retried on the latest version.

Prints a JSON report per table: ``unindexed_before`` / ``unindexed`` ({column: rows its index
does not cover}, before and after; Lance ``index_stats``), ``delta`` ({column: rows added as a
delta index}), ``retrained`` (columns whose index was rebuilt by ``--retrain``), ``built``
({column: seconds} of the indexes built or rebuilt; empty when everything already existed),
``indexes`` (all indexed columns), ``rows``, ``vectors`` and ``not_built`` ({column: why}): the
vector index waits for MIN_VECTOR_ROWS vectors (search is exact brute force until then).
Exit status (xclip_cli.errors): 0 every index exists or ``not_built`` says why; 4 the index is
missing or unreadable, or an index it should have could not be built (the warning above says
why); 7 the index is leased by another process.
"""
from __future__ import annotations

import argparse
import json
import logging

from schemas import VECTOR_COLUMN
from xclip_cli.errors import EXIT_OK, EXIT_OUTPUT, CliError

NAME = "build-index"
LOG_LEVEL = logging.INFO


def add_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("build-index", help="build the ANN and scalar indexes of an index's tables")
    b.add_argument("--index", required=True, metavar="URI")
    b.add_argument("--retrain", action="store_true",
                   help="rebuild every index from all rows (default: add only the rows not indexed yet)")
    return b


def main(args: argparse.Namespace) -> int:
    from xclip_search.index import latest_finished, read_manifests
    from xclip_store.indexes import MIN_VECTOR_ROWS, build_indexes

    latest_finished(read_manifests(args.index), args.index)  # a missing index: the one error of every command
    report = build_indexes(args.index, retrain=args.retrain)
    failed = []
    for name, r in report.items():
        vectors = r.get("vectors")
        if vectors is None or VECTOR_COLUMN in r["indexes"]:
            continue
        if vectors < MIN_VECTOR_ROWS:
            r["not_built"] = {VECTOR_COLUMN: f"{vectors} vectors; the ANN index needs {MIN_VECTOR_ROWS} "
                                             "(search is exact, by brute force, until then)"}
        else:
            failed.append(f"{name} ({vectors} vectors)")
    print(json.dumps(report, indent=2))
    if failed:
        raise CliError(EXIT_OUTPUT, f"build-index {args.index}: the vector index of {', '.join(failed)} could "
                                    "not be built (the warning above says why); rerun build-index")
    return EXIT_OK
