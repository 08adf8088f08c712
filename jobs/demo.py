"""`just demo`: the real indexing job on generated videos and a random demo checkpoint.

1. generates a handful of short videos (and one broken file) under ./demo-output/videos;
2. writes a small random X-CLIP checkpoint in the Hugging Face layout;
3. runs ``xclip-index run`` on a local Ray into ./demo-output;
4. prints the summary and a few rows read back from LanceDB.

The demo model has RANDOM weights: its labels and scores mean nothing. Point
``--model`` at a real microsoft/xclip-* checkpoint for meaningful labels.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DEMO_VIDEOS = {  # name -> (frames, width, height, fps)
    "street.mp4": (150, 320, 240, 30),
    "portrait.mp4": (90, 180, 320, 30),
    "long_take.mkv": (300, 256, 144, 25),
    "tiny.webm": (40, 64, 48, 20),
}


def make_videos(folder: Path) -> None:
    from xclip_core.video.synth import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for name, (n, w, h, fps) in DEMO_VIDEOS.items():
        if not (folder / name).exists():
            codec = "libvpx-vp9" if name.endswith(".webm") else "libx264"
            write_video(folder / name, num_frames=n, width=w, height=h, fps=fps, codec=codec)
    (folder / "broken.mp4").write_bytes(b"not a video: the job reports it as failed and goes on\n")


def show_rows(output: str) -> None:
    import lancedb

    db = lancedb.connect(os.path.join(output, "lancedb"))
    videos = db.open_table("videos").to_arrow().sort_by("uri").to_pylist()
    print("\nvideos (from LanceDB):")
    for r in videos:
        labels = ", ".join(f"{lab} {s:.2f}" for lab, s in zip(r["labels"] or [], r["label_scores"] or []))
        print(f"  {Path(r['uri']).name:<16} {r['status']:<7} segments={r['num_segments']:<3} "
              f"{(r['error'] or labels)[:90]}")
    segments = db.open_table("segments")
    first = segments.to_arrow().sort_by([("uri", "ascending"), ("segment_index", "ascending")]).slice(0, 1)
    if first.num_rows:
        row = first.to_pylist()[0]
        hits = segments.search(row["embedding"]).distance_type("cosine").limit(3).to_list()
        print(f"\nnearest segments to {Path(row['uri']).name}#{row['segment_index']} "
              f"[{row['start_s']:.1f}-{row['end_s']:.1f} s]:")
        for h in hits:
            print(f"  {Path(h['uri']).name}#{h['segment_index']} [{h['start_s']:.1f}-{h['end_s']:.1f} s] "
                  f"distance {h['_distance']:.4f}")
    print("\nNOTE: the demo checkpoint has random weights, so these labels mean nothing.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="demo-output")
    ap.add_argument("--model", default=None, help="default: a random demo checkpoint written under --output")
    args = ap.parse_args(argv)

    from xclip_core.checkpoint import write_random_checkpoint

    out = Path(args.output).resolve()
    make_videos(out / "videos")
    model = args.model
    if model is None:
        model = str(out / "demo-checkpoint")
        if not (Path(model) / "model.safetensors").exists():
            write_random_checkpoint(model, preset="demo", num_frames=8, seed=0)
    # the command line as a user types it (jobs/ does not import the CLI package: it sits above jobs/)
    rc = subprocess.call([sys.executable, "-m", "xclip_cli", "run", "--input", str(out / "videos"),
                          "--output", str(out), "--model", model])
    if rc == 0:
        show_rows(str(out))
    return rc


if __name__ == "__main__":
    sys.exit(main())
