"""Generated videos with rich, distinct content per seed (moving random textures and shapes),
for known-bad matching tests: copies must match, different seeds must not."""
from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np

W, H, FPS, SECONDS = 160, 120, 10, 8
# libx264 as it is here decodes differently from run to run on the same frames with its
# macroblock tree on (measured: 5 encodes of the same frames, 3-5 different decodes); off, all equal
REPEATABLE_X264 = {"x264-params": "mbtree=0"}


def rich_frames(seed: int, n: int = SECONDS * FPS, cells: tuple[int, int] = (7, 9)) -> np.ndarray:
    """Distinct, moving content per seed: a panning random texture (``cells`` random colours
    over 240 x 320, bilinear: more cells, finer detail) plus moving random shapes."""
    rng = np.random.default_rng(seed)
    (cy, cx) = cells
    grid = rng.integers(0, 256, (cy, cx, 3)).astype(np.float32)  # smooth texture: bilinear upsampling
    gy, gx = np.linspace(0, cy - 1, 240), np.linspace(0, cx - 1, 320)
    y0, x0 = np.minimum(gy.astype(int), cy - 2), np.minimum(gx.astype(int), cx - 2)
    fy, fx = (gy - y0)[:, None, None], (gx - x0)[None, :, None]
    tex = (grid[y0][:, x0] * (1 - fy) * (1 - fx) + grid[y0 + 1][:, x0] * fy * (1 - fx)
           + grid[y0][:, x0 + 1] * (1 - fy) * fx + grid[y0 + 1][:, x0 + 1] * fy * fx)  # 240 x 320
    shapes = [(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(-1.5, 1.5), rng.uniform(-1, 1),
               rng.integers(10, 30), rng.integers(0, 256, 3)) for _ in range(4)]
    dx, dy = rng.uniform(-0.8, 0.8, 2)
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        ox, oy = int(40 + dx * i) % 160, int(40 + dy * i) % 120
        f = tex[oy:oy + H, ox:ox + W].copy()
        for x0, y0, vx, vy, r, colour in shapes:
            cx, cy = (x0 + vx * i) % W, (y0 + vy * i) % H
            f[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = colour
        out[i] = f
    return out


def encode(path: Path, frames: np.ndarray, *, codec="libx264", fps=FPS, options=None) -> str:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        s.pix_fmt = "yuv420p"
        s.time_base = fractions.Fraction(1, fps)
        if options:
            s.options = dict(options)
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:s.height, :s.width]), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def scale_frames(frames: np.ndarray, h: int, w: int, interpolation: str = "AREA") -> np.ndarray:
    """Each RGB frame scaled to ``w`` x ``h`` by swscale (PyAV), as ffmpeg's scale filter does
    (its default: ``BICUBIC``; ``AREA`` averages; ``POINT`` is nearest neighbour)."""
    import av

    return np.stack([av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                     .reformat(width=w, height=h, format="rgb24", interpolation=interpolation).to_ndarray()
                     for f in frames])
