"""Thumbnails: one small JPEG per clip, made in the decode stage (``--no-thumbnails`` turns it off).

``thumbnail_jpeg(frames [T, S, S, 3] uint8) -> (jpeg bytes, width, height)``: the clip's middle
sampled frame, as the model sees it (the shortest-edge resize and centre crop of the decode
stage, so a square), scaled down to at most ``THUMBNAIL_PX`` pixels per side. Stored in the
``thumbnails`` table (``schemas.features``) and shown by ``xclip-index search --html``.
"""
from __future__ import annotations

import io

import numpy as np

THUMBNAIL_PX = 160
JPEG_QUALITY = 80


def thumbnail_jpeg(frames: np.ndarray, *, size: int = THUMBNAIL_PX) -> tuple[bytes, int, int]:
    from PIL import Image

    frame = np.ascontiguousarray(frames[len(frames) // 2], dtype=np.uint8)
    img = Image.fromarray(frame, mode="RGB") if frame.ndim == 3 else Image.fromarray(frame)
    if max(img.size) > size:
        img.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), img.width, img.height
