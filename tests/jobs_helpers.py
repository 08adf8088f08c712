"""Shared pieces of the job tests: a test corpus on S3, readers for the outputs,
and a reference computation of clip embeddings straight from xclip_core (no Ray)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

SECRET_ENV = "AWS_SECRET_ACCESS_KEY"


def make_corpus(endpoint: str, bucket: str, workdir: Path) -> dict:
    """Upload good and broken videos plus a manifest; return what a run should find.

    Returns {"inputs": [...], "ok": [uri, ...], "failed": {uri: reason substring or None},
    "long": uri of the 5 s video (in "ok"; skipped by a max_duration_s under 5)}.
    """
    import boto3

    from xclip_core.video.synth import write_video

    s3 = boto3.client("s3", endpoint_url=endpoint)
    workdir.mkdir(parents=True, exist_ok=True)
    good = {  # key -> (frames, w, h, fps)
        "vids/a.mp4": (90, 64, 48, 30),
        "vids/sub dir/ü clip.mkv": (45, 48, 64, 15),
        "vids/c.mov": (30, 40, 40, 30),
        "extra/d.mp4": (75, 56, 40, 25),
        "vids/long.mp4": (150, 32, 32, 30),  # 5 s: skipped when max_duration_s < 5
    }
    for key, (n, w, h, fps) in good.items():
        local = workdir / key.replace("/", "_")
        write_video(local, num_frames=n, width=w, height=h, fps=fps)
        s3.upload_file(str(local), bucket, key)
    a_bytes = (workdir / "vids_a.mp4").read_bytes()
    broken = {
        "vids/broken/zero.mp4": b"",
        "vids/broken/random.mp4": np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "vids/broken/truncated.mp4": a_bytes[: len(a_bytes) // 2],
        "vids/broken/text.mp4": b"this is not a video, just text\n" * 20,
    }
    for key, body in broken.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key="vids/notes.txt", Body=b"not listed: not a video extension")
    manifest = f"s3://{bucket}/vids/a.mp4\n# a comment\n../extra/d.mp4\ns3://{bucket}/vids/missing.mp4\n"
    s3.put_object(Bucket=bucket, Key="lists/m.txt", Body=manifest.encode())
    u = lambda key: f"s3://{bucket}/{key}"  # noqa: E731
    return {
        "inputs": [u("vids/"), u("lists/m.txt")],
        "ok": sorted(u(k) for k in good),
        "failed": {**{u(k): None for k in broken}, u("vids/missing.mp4"): "not found"},
        "long": u("vids/long.mp4"),
    }


def read_lance(output: str, table: str) -> pa.Table:
    import lancedb

    from xclip_core import storage

    db = lancedb.connect(storage.join(output, "lancedb"), storage_options=storage.lancedb_storage_options(output))
    return db.open_table(table).to_arrow()


def open_lance_table(output: str, table: str):
    import lancedb

    from xclip_core import storage

    db = lancedb.connect(storage.join(output, "lancedb"), storage_options=storage.lancedb_storage_options(output))
    return db.open_table(table)


def reference_clip_embeddings(model_dir: str, uri: str, dcfg) -> tuple[np.ndarray, np.ndarray]:
    """(clip embeddings [N, P] L2-normalised, probs [N, K]) computed without Ray or the job."""
    import torch
    import torch.nn.functional as F

    from xclip_core.labels import load_labels
    from xclip_core.model import XCLIP
    from xclip_core.preprocess import PreprocessConfig, preprocess
    from xclip_core.tokenizer import CLIPTokenizer
    from xclip_core.video import decode_video

    model = XCLIP.from_pretrained(model_dir)
    result = decode_video(uri, dcfg)
    assert result.status == "ok", result.reason
    frames = torch.from_numpy(np.stack([c.frames for c in result.clips]))
    labels = load_labels("kinetics400")
    tok = CLIPTokenizer.from_pretrained(model_dir)(list(labels.labels))
    with torch.inference_mode():
        feats = model.encode_video(preprocess(frames, PreprocessConfig.from_pretrained(model_dir)))
        text = model.encode_text(tok["input_ids"], tok["attention_mask"])
        logits = model.video_logits(feats.video_embeds, model.prompt_text(text, feats.visual_tokens))
    return F.normalize(feats.video_embeds, dim=-1).numpy(), torch.softmax(logits, -1).numpy()


def all_output_bytes(output: str) -> list[tuple[str, bytes]]:
    """Every object/file under the output location, with its bytes."""
    from xclip_core import storage

    out = []
    if storage.is_s3(output):
        fs = storage.s3_filesystem()
        for key in fs.find(storage.strip_scheme(output)):
            out.append((key, fs.cat_file(key)))
    else:
        for root, _, files in os.walk(output):
            for f in files:
                p = os.path.join(root, f)
                out.append((p, Path(p).read_bytes()))
    return out
