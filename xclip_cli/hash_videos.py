"""``xclip-index hash --out DIR [--every-s S] URI...``: PDQ of videos as vPDQ files.

Writes ``DIR/<stem>.vpdq`` (local or ``s3://``) for each video (a URI may be a file, a folder
or an ``s3://`` prefix, listed like ``run --input``), in the vPDQ text format that
ThreatExchange's tools read (``moderation.vpdq``): whole frames, bars trimmed
(``xclip_core.video.frame_hash``). By default every frame is hashed, as the vPDQ tool does: a
list item needs dense hashes, since an upload's one-per-second hashes may fall anywhere between
two of its frames (one hash per second on both sides missed a copy trimmed by 0.4 s of fast
motion). ``--every-s 1`` writes the first frame at or after each second (what the index stores).
Such files can be shared, or passed back as ``--blocklist``.

Exit status (xclip_cli.errors): 0 all written; 2 bad arguments (nothing listed, a repeated stem,
an input that cannot be listed); 4 a video could not be hashed or a file not written (files
already written stay).
"""
from __future__ import annotations

import argparse
import logging

from xclip_cli.errors import EXIT_CONFIG, EXIT_OK, EXIT_OUTPUT, CliError

NAME = "hash"
LOG_LEVEL = logging.WARNING


def add_parser(sub) -> argparse.ArgumentParser:
    h = sub.add_parser("hash", help="write per-second PDQ hashes of videos as DIR/<stem>.vpdq (vPDQ format)")
    h.add_argument("uris", nargs="+", metavar="URI", help="videos, folders or s3:// prefixes")
    h.add_argument("--out", required=True, metavar="DIR", help="output folder or s3:// prefix")
    h.add_argument("--every-s", type=float, default=0.0, metavar="S",
                   help="hash the first frame at or after every S seconds (default 0: every frame)")
    return h


def main(args: argparse.Namespace) -> int:
    from jobs.config import ConfigError, ReaderConfig
    from jobs.reader import InputError, list_inputs
    from moderation.item_hash import ItemHashError, video_hashes
    from moderation.vpdq import write_vpdq
    from xclip_core import storage

    if args.every_s < 0:
        raise CliError(EXIT_CONFIG, f"--every-s: must be >= 0 (0: every frame), got {args.every_s:g}")
    try:
        listed = list_inputs(ReaderConfig(inputs=tuple(args.uris))).to_pylist()
    except (ConfigError, InputError) as e:
        raise CliError(EXIT_CONFIG, str(e)) from None
    if not listed:
        raise CliError(EXIT_CONFIG, f"no videos found in {' '.join(args.uris)}")
    stems = [r["uri"].rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] for r in listed]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise CliError(EXIT_CONFIG, f"two videos would write the same DIR/<stem>.vpdq: {', '.join(dup[:5])}; "
                                    "hash them into different --out folders")
    for r, stem in zip(listed, stems):
        try:
            if r.get("status") == "failed":
                raise ItemHashError(f"{r['uri']}: {r.get('error')}")
            fh = video_hashes(r["uri"], every_s=args.every_s)
            out = write_vpdq(storage.join(args.out, stem + ".vpdq"), fh)
        except ItemHashError as e:
            raise CliError(EXIT_OUTPUT, f"hash: {e}") from None
        except OSError as e:
            raise CliError(EXIT_OUTPUT, f"hash: cannot write {args.out}: {type(e).__name__}: {e}") from None
        print(f"{r['uri']}: {len(fh)} hashes -> {out}")
    return EXIT_OK
