"""Generated videos with rich, distinct content per seed (moving random textures and shapes),
for known-bad matching tests: copies must match, different seeds must not."""
from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np

W, H, FPS, SECONDS = 160, 120, 10, 8


def rich_frames(seed: int, n: int = SECONDS * FPS) -> np.ndarray:
    """Distinct, moving content per seed: a panning random texture plus moving random shapes."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (7, 9, 3)).astype(np.float32)  # smooth texture: bilinear upsampling
    gy, gx = np.linspace(0, 6, 240), np.linspace(0, 8, 320)
    y0, x0 = np.minimum(gy.astype(int), 5), np.minimum(gx.astype(int), 7)
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


def resize(frames: np.ndarray, scale: float) -> np.ndarray:
    h, w = int(H * scale) // 2 * 2, int(W * scale) // 2 * 2
    ys, xs = (np.arange(h) / scale).astype(int), (np.arange(w) / scale).astype(int)
    return frames[:, ys][:, :, xs]
