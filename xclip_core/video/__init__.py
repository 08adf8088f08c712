"""Video reading, sampling and decoding (PyAV by default, decord as a backend)."""
from xclip_core.video.config import DecodeConfig
from xclip_core.video.decode import ClipStream, abandoned_decoders, decode_video, iter_clips
from xclip_core.video.meta import VideoError, probe
from xclip_core.video.results import FAILED, OK, SKIPPED, Clip, VideoMeta, VideoResult
from xclip_core.video.sampling import ClipPlan, fixed_windows, plan_clips, tsn_indices

__all__ = ["DecodeConfig", "decode_video", "iter_clips", "ClipStream", "VideoResult", "Clip",
           "VideoMeta", "VideoError", "probe", "abandoned_decoders", "OK", "FAILED", "SKIPPED",
           "ClipPlan", "fixed_windows", "plan_clips", "tsn_indices"]
