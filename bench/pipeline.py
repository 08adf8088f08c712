"""Pipeline efficiency: the job end to end against its own stages' capacities, side by side.

    python bench/pipeline.py [--videos 32] [--seconds 20] [--num-cpus N] [--preset tiny] [--rounds 2]

On the same machine and the same generated videos (320x240 H.264, 30 fps):

  decode capacity  the job's own decode function (``jobs.decoder.decode_one``, the job's
                   DecodeConfig) in N forked processes, no Ray: clips/s (wall clock)
  encode capacity  the job's ``Encoder`` alone, in this process with N torch threads, on
                   clips decoded beforehand (unpacking, preprocessing, model, packing): clips/s
  end to end       ``jobs.runner.run`` through real local Ray (num_cpus=N) into a fresh output.
                   Run on half the videos and on all of them in the same Ray session: the
                   steady-state rate is (clips_all - clips_half) / (pipeline_all - pipeline_half),
                   which cancels the fixed costs; startup = pipeline_all - clips_all / steady.
  fixed costs      Ray start (ray.init), model load (Encoder construction here), model check
                   (driver), and the pipeline startup above (actor start + model load in the
                   actor + first blocks)

efficiency = steady end to end / min(decode capacity, encode capacity); the target is >= 0.9.
The 1-minute load average is printed with each figure: other work on the machine skews them.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def _decode_count(args) -> int:
    from jobs.decoder import decode_one

    row, dcfg = args
    return sum(sum(1 for k in t.column("kind").to_pylist() if k == "clip") for t in decode_one(row, dcfg))


def _rows(videos: list[str]) -> list[dict]:
    from schemas import video_id

    return [{"video_id": video_id(u), "uri": u, "source_size": None, "status": None} for u in videos]


def decode_capacity(videos: list[str], dcfg, processes: int) -> float:
    with mp.get_context("fork").Pool(processes) as pool:
        t0 = time.perf_counter()
        n = sum(pool.imap_unordered(_decode_count, [(r, dcfg) for r in _rows(videos)]))
        return n / (time.perf_counter() - t0)


def encode_capacity(videos: list[str], dcfg, ecfg, labels, threads: int, rounds: int) -> tuple[float, float]:
    """(clips/s, model load seconds) of the Encoder alone on pre-decoded clips."""
    import pyarrow as pa

    from jobs.decoder import decode_one
    from jobs.encoder import Encoder

    tables = [t for r in _rows(videos) for t in decode_one(r, dcfg)]
    clips = pa.concat_tables(tables).filter(pa.compute.equal(pa.concat_tables(tables).column("kind"), "clip"))
    enc = Encoder(ecfg, labels=labels, num_threads=threads)
    bs = ecfg.batch_size
    batches = [clips.slice(i, bs) for i in range(0, clips.num_rows, bs)]
    enc(batches[0])  # warm-up
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in batches:
            enc(b)
        best = max(best, clips.num_rows / (time.perf_counter() - t0))
    return best, enc.load_s


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench/pipeline.py")
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--num-cpus", type=int, default=os.cpu_count())
    p.add_argument("--preset", default="tiny", choices=("tiny", "demo", "base-patch32"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-labels", type=int, default=0,
                   help="score against the first K kinetics400 labels only (0: all 400; the exact X-CLIP "
                        "scorer costs per video x label, so few labels make the encoder cheap)")
    p.add_argument("--rounds", type=int, default=2, help="repeats of each measurement (best is kept)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--baseline-actor-cpus", type=float, default=1.0,
                   help="also run end to end with the encoder actor booking this many CPUs (the plan before "
                        "bench/RESULTS.md 'Pipeline'); 0 skips it")
    args = p.parse_args(argv)

    import ray

    from jobs.config import build_config
    from jobs.decoder import decode_config
    from jobs.encoder import inspect_model
    from jobs.runner import run
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    work = Path(args.workdir or tempfile.mkdtemp(prefix="xclip-pipeline-"))
    model = str(write_random_checkpoint(work / f"model-{args.preset}", preset=args.preset))
    videos = []
    for i in range(args.videos):
        path = work / "videos" / f"v{i:04d}.mp4"
        if not path.exists():
            write_video(path, num_frames=int(args.seconds * 30), width=320, height=240, fps=30)
        videos.append(str(path))

    labels = "kinetics400"
    if args.num_labels:
        from xclip_core.labels import load_labels

        labels = str(work / f"labels-{args.num_labels}.txt")
        Path(labels).write_text("\n".join(load_labels("kinetics400").labels[: args.num_labels]) + "\n")

    def config(inputs: list[str], out: str, actor_cpus: float = 0.0):
        return build_config(None, {"reader": {"inputs": inputs}, "writer": {"output": out},
                                   "encoder": {"model": model, "labels": labels, "batch_size": args.batch_size,
                                               "num_cpus": actor_cpus}})

    cfg = config(videos, str(work / "out"))
    t0 = time.perf_counter()
    info = inspect_model(cfg.encoder)
    model_check = time.perf_counter() - t0
    dcfg = decode_config(cfg.decoder, frames_per_clip=info.num_frames, crop_size=info.crop_size,
                         shortest_edge=info.shortest_edge)
    n = args.num_cpus
    print(f"{len(videos)} videos x {args.seconds:.0f} s 320x240, preset {args.preset}, {len(info.labels)} labels "
          f"({info.num_frames}x{info.crop_size}px clips), batch {args.batch_size}, {n} CPUs, "
          f"{os.cpu_count()} on the machine", flush=True)

    dec = []
    for _ in range(args.rounds):
        dec.append(decode_capacity(videos, dcfg, n))
        print(f"  decode capacity ({n} processes): {dec[-1]:.1f} clips/s  [{_load()}]", flush=True)
    enc, load_s = encode_capacity(videos[: max(2, len(videos) // 4)], dcfg, cfg.encoder, info.labels, n, args.rounds)
    print(f"  encode capacity ({n} torch threads): {enc:.1f} clips/s, model load {load_s:.2f} s  [{_load()}]",
          flush=True)

    t0 = time.perf_counter()
    ray.init(num_cpus=n, include_dashboard=False)
    ray_start = time.perf_counter() - t0
    plans = {"planned": 0.0, **({f"actor books {args.baseline_actor_cpus:g} CPU": args.baseline_actor_cpus}
                                   if args.baseline_actor_cpus else {})}
    e2e = {name: [] for name in plans}
    run(config(videos[:2], str(work / "out-warmup")), progress_every_s=1e9)  # Ray workers, imports: not in any figure
    for r in range(args.rounds):
        for name, actor_cpus in plans.items():  # side by side, interleaved
            res = {}
            for label, inputs in (("half", videos[: len(videos) // 2]), ("all", videos)):
                out = work / f"out-{r}-{label}"
                shutil.rmtree(out, ignore_errors=True)
                s = run(config(inputs, str(out), actor_cpus), progress_every_s=1e9)
                res[label] = (s.num_segments, s.stage_seconds["pipeline"])
            (c1, p1), (c2, p2) = res["half"], res["all"]
            steady = (c2 - c1) / (p2 - p1) if p2 > p1 else float("nan")  # nan: noise swamped the difference
            e2e[name].append((c2 / p2, steady, p2 - c2 / steady if steady == steady else float("nan")))
            print(f"  end to end [{name}]: {c2} clips in {p2:.2f} s = {c2 / p2:.1f} clips/s; half the videos "
                  f"{c1} in {p1:.2f} s; steady {steady:.1f} clips/s, startup {e2e[name][-1][2]:.2f} s  "
                  f"[{_load()}]", flush=True)
    ray.shutdown()
    best_dec = max(dec)
    bound = min(best_dec, enc)
    print(f"\nsummary: decode {best_dec:.1f}, encode {enc:.1f} clips/s; fixed costs: Ray start {ray_start:.2f} s, "
          f"model check {model_check:.2f} s, model load {load_s:.2f} s  [{_load()}]")
    for name, runs in e2e.items():
        whole, steady, startup = max(runs, key=lambda x: x[0])  # the least disturbed run
        print(f"  {name}: end to end {whole:.1f} clips/s (steady {steady:.1f}, pipeline startup {startup:.2f} s); "
              f"efficiency {whole / bound:.2f} of min(decode, encode) (steady: {steady / bound:.2f})")


if __name__ == "__main__":
    main()
