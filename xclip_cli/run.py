"""``xclip-index run``: the indexing job from the command line.

    xclip-index run --input URI [--input URI ...] --output URI --model SOURCE
                    [--labels NAME|FILE] [--config job.toml] [--ray-address ADDR]
                    [--include GLOB ...] [--exclude GLOB ...] [stage options]

Exit status (xclip_cli.errors has the full table): 0 when the job finished (also when some videos
failed: they are rows with ``status = failed``); 2 bad arguments or config; 3 model or label set
not loadable; 4 output not writable; 5 internal error: a bug in xclip-index or a dependency (an
exception that is not a media or I/O error, e.g. a TypeError after a library API change) or the
breaker tripped (many videos failing with the same reason); finished videos are written,
unfinished ones get no row, so a rerun after the fix does them; 1 the pipeline broke down (or Ray
could not start); 7 another run holds the output's lease (xclip_store.lease): nothing written; 6 an input
cannot be listed (S3 NoSuchBucket, AccessDenied/InvalidAccessKeyId, endpoint unreachable: the
message names the S3 error code), or the run would delete more than ``writer.max_delete_share`` of a
folder/prefix's indexed videos (``--max-delete-share``; jobs.deletions); 143 SIGTERM.
Rerunning the same command resumes (jobs.resume).
S3 settings come from the standard AWS environment variables only.
"""
from __future__ import annotations

import argparse
import logging

from xclip_cli.errors import EXIT_OK, check_writable, redact

NAME = "run"
LOG_LEVEL = logging.INFO


def add_parser(sub) -> argparse.ArgumentParser:
    r = sub.add_parser("run", help="run the indexing job")
    r.add_argument("--input", action="append", required=True, metavar="URI",
                   help="s3://bucket/prefix/, a local folder, a video, or a manifest (.txt/.csv/.parquet); repeatable")
    r.add_argument("--output", required=True, metavar="URI", help="output location (local folder or s3://)")
    r.add_argument("--model", required=True, metavar="SOURCE", help="checkpoint dir, s3:// prefix or hub id")
    r.add_argument("--labels", metavar="NAME|FILE",
                   help="label set (default: the output's current label set; kinetics400 for a new output)")
    r.add_argument("--config", metavar="job.toml", help="stage options; flags override it")
    r.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: RAY_ADDRESS or a local Ray)")
    r.add_argument("--run-id", help="run id (default: UTC time + random suffix)")
    g = r.add_argument_group("reader")
    g.add_argument("--include", action="append", metavar="GLOB", help="keep URIs matching this glob; repeatable")
    g.add_argument("--exclude", action="append", metavar="GLOB", help="drop URIs matching this glob; repeatable")
    g.add_argument("--extensions", metavar="EXT,EXT", help="video file extensions to list")
    g = r.add_argument_group("decoder")
    g.add_argument("--sampler", choices=("fixed", "tsn"))
    g.add_argument("--segments", choices=("fixed", "shots"),
                   help="fixed windows over the whole video (default) or windows inside detected shots")
    g.add_argument("--window-s", type=float)
    g.add_argument("--stride-s", type=float)
    g.add_argument("--max-clips-per-video", type=int)
    g.add_argument("--max-duration-s", type=float)
    g.add_argument("--no-thumbnails", dest="thumbnails", action="store_false", default=None,
                   help="do not store a small JPEG per clip (thumbnails table)")
    g = r.add_argument_group("encoder")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"),
                   help="default auto: bf16 on CUDA, fp32 on CPU")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"))
    g.add_argument("--top-k", type=int)
    g.add_argument("--num-actors", type=int)
    g.add_argument("--max-gpus", type=int, metavar="N",
                   help="GPU encoder actors to ask for, GPUs an autoscaler must start included (docs/planner.md)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the encoder step (default: on for CUDA, off for CPU; tens of seconds "
                        "to compile per actor)")
    g.add_argument("--store-prompt-features", action="store_true", default=None,
                   help="store each clip's visual tokens (prompt_features table): exact relabel without decoding")
    g = r.add_argument_group("moderation")
    g.add_argument("--policy", metavar="FILE", help="moderation policy YAML (or 'example'): writes the moderation "
                                                    "table; scores every window (no --max-clips-per-video)")
    g.add_argument("--review-out", metavar="URI", help="with --policy: JSON lines of block/review/error decisions")
    g.add_argument("--blocklist", metavar="URI", help="with --policy: known-bad videos, .vpdq or .pdq files "
                                                      "(file, folder or s3:// prefix); copies are blocked")
    g = r.add_argument_group("writer")
    g.add_argument("--chunk-rows", type=int)
    g.add_argument("--full", action="store_true", default=None,
                   help="process every input (default: incremental, only new or changed inputs; see "
                        "jobs.incremental)")
    g.add_argument("--max-delete-share", type=float, metavar="SHARE",
                   help="refuse to delete more than this share of a folder/prefix's indexed videos (default 0.1; "
                        "1 allows any; jobs.deletions)")
    g.add_argument("--skip-unchanged", action="store_true", default=None,
                   help="deprecated, no effect: incremental is the default")
    return r


def config_from_args(args: argparse.Namespace):
    from jobs.config import build_config, load_toml

    overrides = {
        "reader": {"inputs": args.input, "include": args.include, "exclude": args.exclude,
                   "extensions": args.extensions.split(",") if args.extensions else None},
        "decoder": {"sampler": args.sampler, "segments": args.segments, "window_s": args.window_s, "stride_s": args.stride_s,
                    "max_clips_per_video": args.max_clips_per_video, "max_duration_s": args.max_duration_s,
                    "thumbnails": args.thumbnails},
        "encoder": {"model": args.model, "labels": args.labels, "batch_size": args.batch_size,
                    "precision": args.precision, "device": args.device, "top_k": args.top_k,
                    "num_actors": args.num_actors, "compile": args.compile,
                    "store_prompt_features": args.store_prompt_features, "policy": args.policy,
                    "blocklist": args.blocklist, "max_gpu_actors": args.max_gpus},
        "writer": {"output": args.output, "chunk_rows": args.chunk_rows, "skip_unchanged": args.skip_unchanged,
                   "full": args.full, "review_out": args.review_out, "max_delete_share": args.max_delete_share},
    }
    return build_config(load_toml(args.config) if args.config else None, overrides,
                        ray_address=args.ray_address, run_id=args.run_id)


def main(args: argparse.Namespace) -> int:
    from jobs.runner import run

    check_writable("--review-out", args.review_out, makes_folders=True)  # before any work (S3: when written)
    summary = run(config_from_args(args))
    print(redact(summary.format()))
    return EXIT_OK
