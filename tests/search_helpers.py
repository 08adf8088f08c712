"""Shared pieces of the xclip_search tests: a small corpus of distinct generated videos, a label
file, and an independent reference (the model called directly, numpy brute force)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEOS = {  # name -> (frames, width, height, fps): different sizes and lengths, so different pixels
    "a.mp4": (90, 64, 48, 30),
    "b.mp4": (60, 48, 64, 15),
    "c.mkv": (120, 40, 40, 30),
    "d.mp4": (75, 56, 40, 25),
}
LABELS = ["riding a bike", "swimming", "playing guitar", "cooking", "dancing", "it's\"; DROP", "juggling"]
LABELS_2 = ["surfing", "reading a book", "running", "painting", "singing"]


def make_videos(folder: Path) -> list[str]:
    from xclip_core.video.synth import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for name, (n, w, h, fps) in VIDEOS.items():
        write_video(folder / name, num_frames=n, width=w, height=h, fps=fps)
    (folder / "broken.mp4").write_bytes(b"not a video" * 100)
    return sorted(str(folder / n) for n in VIDEOS)


def label_file(folder: Path, labels: list[str], name: str = "labels.txt") -> str:
    p = folder / name
    p.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return str(p)


def text_features(model_dir: str, texts: list[str], *, normalize: bool = True) -> np.ndarray:
    """Text features straight from the model (not through xclip_search)."""
    import torch
    import torch.nn.functional as F

    from xclip_core.model import XCLIP
    from xclip_core.tokenizer import CLIPTokenizer

    model = XCLIP.from_pretrained(model_dir)
    enc = CLIPTokenizer.from_pretrained(model_dir)(texts)
    with torch.no_grad():
        f = model.encode_text(enc["input_ids"], enc["attention_mask"]).float()
    return (F.normalize(f, dim=-1) if normalize else f).numpy()


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k rows of ``vectors`` with the highest cosine to ``query``."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.argsort(-(v @ (query / np.linalg.norm(query))), kind="stable")[:k]


def relabel_bench():
    """bench/relabel_scale.py as a module (its ``build_index`` grows synthetic indexes, ``run_measured``
    runs ``xclip-index`` in its own process and samples the tree's peak RSS)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "relabel_scale.py"
    spec = importlib.util.spec_from_file_location("relabel_scale", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
