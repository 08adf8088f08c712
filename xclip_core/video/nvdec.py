"""NVDEC decode backend: the GPU's video engines decode, torch resizes and crops.

``decode_nvdec(uri, cfg, device=...) -> NvdecResult`` gives the same clips as
the CPU path (``xclip_core.video.decode``) with frames as uint8 ``[T,S,S,3]``
tensors on the GPU, ready for the encoder without a host round trip:

1. CPU, no decoding: open the container with PyAV, demux the packet index
   (``meta.index_stream``), check limits and plan the clips (``plan_clips``): the
   SAME display-order frame indices and timestamps as the CPU path.
2. GPU: ``PyNvVideoCodec.SimpleDecoder(source, gpu_id, output_color_type=RGB)``
   and ``get_batch_frames_by_index(indices)`` (display order; chunks of
   ``_CHUNK`` frames so full-size frames never pile up), frames to torch via DLPack.
3. GPU: :func:`resize_crop` (shortest edge, bilinear with antialiasing, centre
   crop; the box of ``xclip_core.geometry.crop_box``).

Pixels are not bit-equal to the CPU path: NVDEC's YUV->RGB conversion and
torch's bilinear resize differ from swscale's. Measured on generated videos
(tests/test_video_nvdec.py): resize/crop alone within ``GEOMETRY_TOLERANCE``
(mean absolute difference per pixel value, 0-255; measured 0.00-0.03, max 1 at 224 px from
180x320 to 1920x1080) of swscale on the same RGB frame.

Fallback: a codec NVDEC cannot decode (``NVDEC_CODECS``), a frame size outside
its limits, the package or a GPU missing, or any error raised by PyNvVideoCodec
(:func:`is_media_error`) -> the CPU path decodes the video and
``NvdecResult.backend`` is ``"pyav"`` with ``note`` saying why. A bug in our
code (TypeError, AttributeError, ...) is not a media error: it propagates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from xclip_core.geometry import crop_box
from xclip_core.video.config import DecodeConfig
from xclip_core.video.meta import (VideoError, _short, check_limits, index_stream, make_meta,
                                   open_container, open_source, video_stream)
from xclip_core.video.results import FAILED, OK, Clip, VideoResult
from xclip_core.video.sampling import plan_clips

# NVDEC decodes these (NVIDIA Video Codec SDK support matrix, Ampere and later).
NVDEC_CODECS = frozenset({"h264", "hevc", "av1", "vp8", "vp9", "mpeg1video", "mpeg2video", "mpeg4",
                          "vc1", "mjpeg"})
NVDEC_MIN_SIDE, NVDEC_MAX_SIDE = 64, 8192   # a conservative floor: smaller videos go to the CPU
GEOMETRY_TOLERANCE = 0.25                    # mean |torch - swscale| per pixel value, same RGB input (max 1)
_CHUNK = 128                                 # full-size frames held on the GPU at once

# frames(source, indices, device) -> uint8 [N,H,W,3] tensor in the order of ``indices``
FrameReader = Callable[[object, list, object], "object"]


@dataclass
class NvdecResult:
    """``result`` as the CPU path reports it (``clips`` filled, frames are torch
    tensors on the decode device for backend "nvdec", numpy arrays for "pyav");
    ``backend`` "nvdec" | "pyav" (fell back); ``note`` why it fell back."""

    result: VideoResult
    backend: str
    note: str | None = None
    clips: list = field(default_factory=list)


def is_media_error(e: BaseException) -> bool:
    """An error about this video or the NVDEC engine (fall back to the CPU), not a
    bug in our code. PyNvVideoCodec raises RuntimeError (its C++ exceptions via
    pybind11), ValueError/IndexError from its Python layer, and plain
    ``Exception("Elementary streams not supported ...")``."""
    if isinstance(e, (TypeError, AttributeError, NameError, AssertionError, ImportError)):
        return False
    if type(e) is Exception or isinstance(e, (RuntimeError, ValueError, IndexError, OSError, VideoError)):
        return True
    return type(e).__module__.split(".")[0] in ("PyNvVideoCodec", "_PyNvVideoCodec")


def nvdec_unsupported(meta) -> str | None:
    """Why NVDEC will not be tried for a video with this metadata (None: try it)."""
    if meta.codec not in NVDEC_CODECS:
        return f"codec {meta.codec} not supported by NVDEC"
    if min(meta.width, meta.height) < NVDEC_MIN_SIDE or max(meta.width, meta.height) > NVDEC_MAX_SIDE:
        return f"frame size {meta.width}x{meta.height} outside NVDEC limits"
    return None


def resize_crop(frames, crop: int, shortest_edge: int):
    """uint8 [N,H,W,3] tensor (any device) -> uint8 [N,crop,crop,3] on the same
    device: shortest edge to ``shortest_edge`` (long edge by the model's rule),
    bilinear with antialiasing (swscale's bilinear also widens its filter when
    downscaling), then the centre crop of ``crop_box``."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    rw, rh, top, left = crop_box(int(w), int(h), shortest_edge, crop)
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    x = x[:, :, top:top + crop, left:left + crop]
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def nvdec_unavailable(device) -> str | None:
    """Why this process cannot decode on NVDEC (None: it can)."""
    import importlib.util

    if getattr(device, "type", str(device)) != "cuda":
        return f"device {device} is not a CUDA device"
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return "PyNvVideoCodec is not installed (pip install xclip-index[nvdec])"
    return None


def gpu_index(device) -> int:
    """The CUDA ordinal of ``device`` (``"cuda"``, ``"cuda:1"`` or a ``torch.device``): its index, else
    the current device. A string's ``.index`` is ``str.index``, so it is parsed first."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"NVDEC decodes on a CUDA device, got {device!r}")
    return dev.index if dev.index is not None else torch.cuda.current_device()


class NvdecReader:
    """The NVDEC frame reader for one video: one ``SimpleDecoder`` opened on first
    use and kept for the video's chunks. ``reader(source, indices, device)`` ->
    uint8 [N,H,W,3] CUDA tensor of display-order frames ``indices`` (ascending)."""

    def __init__(self):
        self.dec = None

    def __call__(self, source, indices: list, device):
        import PyNvVideoCodec as nvc
        import torch

        if self.dec is None:
            gpu = gpu_index(device)
            self.dec = nvc.SimpleDecoder(source, gpu_id=gpu, use_device_memory=True,
                                         output_color_type=nvc.OutputColorType.RGB)
        frames = self.dec.get_batch_frames_by_index(list(indices))
        if len(frames) != len(indices):  # it drops indices past its own frame count
            raise RuntimeError(f"NVDEC returned {len(frames)} of {len(indices)} frames "
                               f"(it counts {len(self.dec)} frames)")
        out = torch.stack([torch.from_dlpack(f) for f in frames]).to(device)
        if out.dim() != 4 or out.shape[-1] != 3 or out.dtype != torch.uint8:
            raise RuntimeError(f"unexpected NVDEC frame layout {tuple(out.shape)} {out.dtype}")
        return out


def _source_for_nvdec(src):
    """A local path stays a path; an in-memory S3 object goes as bytes."""
    if hasattr(src, "getvalue"):
        return src.getvalue()
    if hasattr(src, "read"):
        src.seek(0)
        return src.read()
    return src


def _plan(uri: str, cfg: DecodeConfig):
    src, _ = open_source(uri, cfg)
    with open_container(src) as container:
        stream = video_stream(container)
        index = index_stream(container, stream)
        meta = make_meta(stream, index)
    check_limits(meta, cfg)
    plans = plan_clips(index.times, index.duration_s, cfg)
    if not plans:
        raise VideoError(FAILED, "no clips to sample")
    return src, index, meta, plans


def _gpu_clips(src, index, plans, cfg: DecodeConfig, device, read: FrameReader) -> list[Clip]:
    needed = sorted({i for p in plans for i in p.frame_indices})
    where = {fi: k for k, fi in enumerate(needed)}
    crops = []
    source = _source_for_nvdec(src)
    for a in range(0, len(needed), _CHUNK):
        full = read(source, needed[a:a + _CHUNK], device)
        crops.append(resize_crop(full, cfg.crop_size, cfg.shortest_edge))
        del full
    import torch

    crops = torch.cat(crops)
    clips = []
    for p in plans:
        idx = np.asarray(p.frame_indices, np.int64)
        sel = torch.as_tensor([where[i] for i in p.frame_indices], device=crops.device)
        clips.append(Clip(segment_index=p.segment_index, start_s=p.start_s, end_s=p.end_s,
                          frame_indices=idx, timestamps=np.round(index.times[idx], 6),
                          frames=crops.index_select(0, sel)))
    return clips


def decode_nvdec(uri: str, cfg: DecodeConfig | None = None, *, device=None,
                 read: FrameReader | None = None) -> NvdecResult:
    """All clips of one video decoded on NVDEC (see module doc); never raises on
    bad input. ``read`` replaces the NVDEC frame reader (same contract as
    :class:`NvdecReader`): tests drive this code path on the CPU with it."""
    import time

    from xclip_core.video.decode import decode_video

    cfg = cfg or DecodeConfig()
    uri = str(uri)
    t0 = time.perf_counter()
    try:
        src, index, meta, plans = _plan(uri, cfg)
    except VideoError as e:  # the CPU path would say the same: no fallback needed
        return NvdecResult(VideoResult(uri, e.status, e.reason, decode_s=time.perf_counter() - t0), "nvdec")
    note = nvdec_unsupported(meta) or (nvdec_unavailable(device) if read is None else None)
    if note is None:
        try:
            clips = _gpu_clips(src, index, plans, cfg, device, read or NvdecReader())
            res = VideoResult(uri, OK, None, meta, clips=clips, num_clips=len(clips),
                              decode_s=round(time.perf_counter() - t0, 6))
            return NvdecResult(res, "nvdec", None, clips)
        except Exception as e:
            if not is_media_error(e):
                raise
            note = f"nvdec failed: {_short(e)}"
    res = decode_video(uri, cfg.with_(backend="pyav"))
    res.decode_s = round(time.perf_counter() - t0, 6)
    return NvdecResult(res, "pyav", note, res.clips)
