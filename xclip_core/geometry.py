"""Resize-shortest-edge + centre-crop geometry (Hugging Face CLIP/VideoMAE), shared by
preprocessing (torch), the decode stage (swscale, ``xclip_core.video.convert``) and NVDEC.
Pure arithmetic, no torch or PyAV import. Sizes are always (width, height)."""
from __future__ import annotations


def resize_shape(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """(new_w, new_h) by transformers' rule: short side -> n, long side -> int(n * long / short)."""
    if width <= height:
        return shortest_edge, int(shortest_edge * height / width)
    return int(shortest_edge * width / height), shortest_edge


def crop_box(width: int, height: int, shortest_edge: int, crop: int) -> tuple[int, int, int, int]:
    """(new_w, new_h, top, left) of the centre crop in the resized image."""
    rw, rh = resize_shape(width, height, shortest_edge)
    return rw, rh, (rh - crop) // 2, (rw - crop) // 2
