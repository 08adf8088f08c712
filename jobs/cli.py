"""``xclip-index run``: the indexing job from the command line.

    xclip-index run --input URI [--input URI ...] --output URI --model SOURCE
                    [--labels NAME|FILE] [--config job.toml] [--ray-address ADDR]
                    [--include GLOB ...] [--exclude GLOB ...] [stage options]
    xclip-index search | relabel | build-index ...   (xclip_search.cli)

    xclip-index moderate --index URI --policy FILE [--review-out URI]   (moderation.recompute)
    xclip-index serve --index URI [--host H] [--port P]   (xclip_serve.cli: the web app)

Exit status: 0 when the job finished (also when some videos failed: they are
rows with ``status = failed``); 2 bad arguments or config; 3 model or label set
not loadable; 4 output not writable; 5 internal
error: a bug in xclip-index or a dependency (an exception that is not a media or
I/O error, e.g. a TypeError after a library API change) or the breaker tripped
(many videos failing with the same reason); finished videos are written,
unfinished ones get no row, so a rerun after the fix does them; 1 the pipeline
broke down (or Ray could not start); 7 another run holds the output's lease
(jobs.lease): nothing written; 6 an input cannot be listed (S3 NoSuchBucket,
AccessDenied/InvalidAccessKeyId, endpoint unreachable: the message names the S3
error code).
Every failure is one ``xclip-index: error: ...`` line; rerunning the same
command resumes (jobs.resume).
S3 settings come from the standard AWS environment variables only.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

EXIT_OK, EXIT_PIPELINE, EXIT_CONFIG, EXIT_MODEL, EXIT_OUTPUT = 0, 1, 2, 3, 4
EXIT_INTERNAL = 5
EXIT_INPUT, EXIT_LOCKED = 6, 7
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def redact(text: str) -> str:
    """Remove credential values from a message before it is printed or logged."""
    for name in _SECRET_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xclip-index", description="Index videos with X-CLIP into Parquet and LanceDB.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the indexing job")
    r.add_argument("--input", action="append", required=True, metavar="URI",
                   help="s3://bucket/prefix/, a local folder, a video, or a manifest (.txt/.csv/.parquet); repeatable")
    r.add_argument("--output", required=True, metavar="URI", help="output location (local folder or s3://)")
    r.add_argument("--model", required=True, metavar="SOURCE", help="checkpoint dir, s3:// prefix or hub id")
    r.add_argument("--labels", metavar="NAME|FILE", help="label set (default: kinetics400)")
    r.add_argument("--config", metavar="job.toml", help="stage options; flags override it")
    r.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: RAY_ADDRESS or a local Ray)")
    r.add_argument("--run-id", help="run id (default: UTC time + random suffix)")
    g = r.add_argument_group("reader")
    g.add_argument("--include", action="append", metavar="GLOB", help="keep URIs matching this glob; repeatable")
    g.add_argument("--exclude", action="append", metavar="GLOB", help="drop URIs matching this glob; repeatable")
    g.add_argument("--extensions", metavar="EXT,EXT", help="video file extensions to list")
    g = r.add_argument_group("decoder")
    g.add_argument("--sampler", choices=("fixed", "tsn"))
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
    g.add_argument("--review-out", metavar="URI", help="with --policy: JSON lines of review/block decisions")
    g.add_argument("--blocklist", metavar="URI", help="with --policy: known-bad videos (folder or s3:// prefix) "
                                                      "or a .json hash file; near-duplicates are blocked")
    g = r.add_argument_group("writer")
    g.add_argument("--chunk-rows", type=int)
    g.add_argument("--full", action="store_true", default=None,
                   help="process every input (default: incremental, only new or changed inputs; see "
                        "jobs.incremental)")
    g.add_argument("--skip-unchanged", action="store_true", default=None,
                   help="deprecated, no effect: incremental is the default")
    m = sub.add_parser("moderate", help="recompute moderation decisions from stored features (no decoding)")
    m.add_argument("--index", required=True, metavar="URI", help="an index written by `run` (local or s3://)")
    m.add_argument("--policy", required=True, metavar="FILE", help="moderation policy YAML (or 'example')")
    m.add_argument("--review-out", metavar="URI", help="JSON lines of review/block decisions, most severe first")
    m.add_argument("--run-id", help="run id of the moderation rows (default: moderate-<UTC time>-<random>)")
    m.add_argument("--blocklist", metavar="URI", help="known-bad videos or .json hashes, matched against the "
                                                      "index's stored frame hashes")
    from xclip_search.cli import add_commands

    add_commands(sub)  # search, relabel, build-index
    from xclip_serve.cli import add_command as add_serve

    add_serve(sub)  # serve
    return p


def config_from_args(args: argparse.Namespace):
    from jobs.config import build_config, load_toml

    overrides = {
        "reader": {"inputs": args.input, "include": args.include, "exclude": args.exclude,
                   "extensions": args.extensions.split(",") if args.extensions else None},
        "decoder": {"sampler": args.sampler, "window_s": args.window_s, "stride_s": args.stride_s,
                    "max_clips_per_video": args.max_clips_per_video, "max_duration_s": args.max_duration_s,
                    "thumbnails": args.thumbnails},
        "encoder": {"model": args.model, "labels": args.labels, "batch_size": args.batch_size,
                    "precision": args.precision, "device": args.device, "top_k": args.top_k,
                    "num_actors": args.num_actors, "compile": args.compile,
                    "store_prompt_features": args.store_prompt_features, "policy": args.policy,
                    "blocklist": args.blocklist, "max_gpu_actors": args.max_gpus},
        "writer": {"output": args.output, "chunk_rows": args.chunk_rows, "skip_unchanged": args.skip_unchanged,
                   "full": args.full, "review_out": args.review_out},
    }
    return build_config(load_toml(args.config) if args.config else None, overrides,
                        ray_address=args.ray_address, run_id=args.run_id)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command not in ("run", "moderate"):
        return args.func(args)  # search, relabel, build-index (xclip_search.cli), serve (xclip_serve.cli)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactFilter())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[handler])
    from jobs.config import ConfigError
    from jobs.encoder import ModelError
    from jobs.lease import LeaseError
    from jobs.reader import InputError
    from jobs.runner import InternalError, PipelineError, run
    from jobs.writer import OutputError

    def fail(code: int, msg: str) -> int:
        print(f"xclip-index: error: {redact(msg)}", file=sys.stderr)
        return code

    if args.command == "moderate":
        from moderation.cli import moderate_main

        return moderate_main(args, fail)
    try:
        summary = run(config_from_args(args))
    except ConfigError as e:
        return fail(EXIT_CONFIG, str(e))
    except ModelError as e:
        return fail(EXIT_MODEL, str(e))
    except OutputError as e:
        return fail(EXIT_OUTPUT, str(e))
    except InternalError as e:
        return fail(EXIT_INTERNAL, str(e))
    except PipelineError as e:
        return fail(EXIT_PIPELINE, str(e))
    except LeaseError as e:
        return fail(EXIT_LOCKED, str(e))
    except InputError as e:
        return fail(EXIT_INPUT, str(e))
    print(redact(summary.format()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
