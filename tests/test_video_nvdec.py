"""NVDEC backend (xclip_core.video.nvdec): the GPU geometry against swscale, the
frame plan against the CPU path, fallback and error classification on the CPU;
NVDEC itself against the CPU path on a CUDA host (``-m cuda``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.video_fixtures import cached
from xclip_core.video import DecodeConfig, decode_video
from xclip_core.video.convert import rgb_to_crop
from xclip_core.video.nvdec import (GEOMETRY_TOLERANCE, decode_nvdec, is_media_error, nvdec_unsupported,
                                    resize_crop)
from xclip_core.video.synth import synth_frame, write_video

CFG = DecodeConfig(frames_per_clip=8, crop_size=224, shortest_edge=224)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return cached(tmp_path_factory.getbasetemp() / "videos_nvdec")


def pyav_frames(source, indices, device):
    """A real decoder (PyAV, every frame to full-size RGB) behind NVDEC's reader
    contract, so the CPU drives decode_nvdec's own planning, chunking and cropping."""
    import av

    with av.open(source) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return torch.from_numpy(np.stack([frames[i] for i in indices])).to(device or "cpu")


@pytest.mark.parametrize("w,h", [(320, 240), (180, 320), (640, 360), (1280, 720), (230, 224)])
def test_resize_crop_matches_swscale_geometry(w, h):
    rgb = np.stack([synth_frame(i, w, h) for i in (0, 7)])
    ours = resize_crop(torch.from_numpy(rgb), 224, 224).numpy()
    ref = np.stack([rgb_to_crop(f, 224, 224) for f in rgb])
    assert ours.shape == ref.shape == (2, 224, 224, 3)
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() <= GEOMETRY_TOLERANCE and diff.max() <= 1, (diff.mean(), diff.max())
    # a shifted or flipped crop would be far off even on smooth content
    shifted = np.abs(np.roll(ours, 8, axis=2).astype(np.int16) - ref.astype(np.int16)).mean()
    assert shifted > diff.mean() * 1.5


def test_same_frames_and_timestamps_as_cpu_path(videos):
    for name in ("h264_mp4", "vfr", "portrait"):
        ref = decode_video(str(videos[name]), CFG)
        got = decode_nvdec(str(videos[name]), CFG, device="cpu", read=pyav_frames)
        assert got.backend == "nvdec" and got.note is None, (name, got.note)
        assert got.result.status == ref.status == "ok"
        assert got.result.meta == ref.meta
        assert len(got.clips) == len(ref.clips) > 0
        for a, b in zip(got.clips, ref.clips):
            assert (a.segment_index, a.start_s, a.end_s) == (b.segment_index, b.start_s, b.end_s)
            np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
            np.testing.assert_array_equal(a.timestamps, b.timestamps)
            assert a.frames.dtype == torch.uint8 and tuple(a.frames.shape) == b.frames.shape
            diff = np.abs(a.frames.numpy().astype(np.int16) - b.frames.astype(np.int16)).mean()
            assert diff <= 3.0, (name, diff)  # RGB then resize vs swscale from YUV in one step (2.3 measured, 160x120 upscaled)


def test_fallback_to_cpu_with_reason(videos):
    def broken(source, indices, device):
        raise RuntimeError("CUDA_ERROR_NO_DEVICE")

    ref = decode_video(str(videos["h264_mp4"]), CFG)
    got = decode_nvdec(str(videos["h264_mp4"]), CFG, device="cpu", read=broken)
    assert got.backend == "pyav" and got.note == "nvdec failed: RuntimeError: CUDA_ERROR_NO_DEVICE"
    assert got.result.status == "ok" and len(got.clips) == len(ref.clips)
    np.testing.assert_array_equal(got.clips[0].frames, ref.clips[0].frames)  # the CPU path's own pixels

    tiny = decode_nvdec(str(videos["tiny"]), CFG, device="cpu", read=broken)  # 16x16: never tried
    assert tiny.backend == "pyav" and "outside NVDEC limits" in tiny.note and tiny.result.status == "ok"


def test_bug_in_reader_propagates(videos):
    def buggy(source, indices, device):
        return None + 1

    with pytest.raises(TypeError):
        decode_nvdec(str(videos["h264_mp4"]), CFG, device="cpu", read=buggy)


def test_bad_inputs_fail_like_cpu_path(videos):
    for name in ("random", "zero", "text", "audio_only"):
        ref = decode_video(str(videos[name]), CFG)
        got = decode_nvdec(str(videos[name]), CFG, device="cpu", read=pyav_frames)
        assert (got.result.status, got.result.reason) == (ref.status, ref.reason), name
        assert got.clips == []


def test_error_classification_and_codec_support():
    from xclip_core.video.results import VideoMeta

    assert is_media_error(RuntimeError("Decode Error occurred for picture 3"))
    assert is_media_error(Exception("Elementary streams not supported by Simple Decoder."))
    assert is_media_error(ValueError("SimpleDecoder requires a seekable stream."))
    for bug in (TypeError("x"), AttributeError("x"), NameError("x")):
        assert not is_media_error(bug)
    meta = VideoMeta(10.0, 30.0, 300, 640, 360, "h264")
    assert nvdec_unsupported(meta) is None
    assert "codec" in nvdec_unsupported(VideoMeta(10.0, 30.0, 300, 640, 360, "prores"))


def _has_nvdec() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import PyNvVideoCodec  # noqa: F401
    except Exception:  # noqa: BLE001  any failure: no NVDEC here
        return False
    return True


@pytest.mark.cuda
@pytest.mark.skipif(not _has_nvdec(), reason="needs CUDA and PyNvVideoCodec")
def test_nvdec_matches_cpu_clips_and_embeddings(tmp_path):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.model import XCLIP
    from xclip_core.preprocess import PreprocessConfig, preprocess

    path = write_video(tmp_path / "v360.mp4", num_frames=150, width=640, height=360, fps=30)
    ref = decode_video(str(path), CFG)
    got = decode_nvdec(str(path), CFG, device=torch.device("cuda"))
    assert got.backend == "nvdec", got.note
    assert len(got.clips) == len(ref.clips) == 3  # 5 s: [0, 2], [2, 4] and the tail window [3, 5]
    for a, b in zip(got.clips, ref.clips):
        np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
        assert a.frames.is_cuda
        diff = np.abs(a.frames.cpu().numpy().astype(np.int16) - b.frames.astype(np.int16)).mean()
        assert diff <= 8.0, diff  # colour conversion (NVDEC vs swscale) + resize filter
    ckpt = write_random_checkpoint(tmp_path / "ckpt", preset="base-patch32", num_frames=8)
    model = XCLIP.from_pretrained(ckpt, device="cuda", dtype=torch.float32)
    pre = PreprocessConfig.from_pretrained(ckpt)
    with torch.inference_mode():
        e_gpu = model.encode_video(preprocess(torch.stack([c.frames for c in got.clips]), pre)).video_embeds
        cpu = torch.from_numpy(np.stack([c.frames for c in ref.clips])).cuda()
        e_cpu = model.encode_video(preprocess(cpu, pre)).video_embeds
    cos = torch.nn.functional.cosine_similarity(e_gpu.float(), e_cpu.float(), dim=-1)
    assert cos.min().item() >= 0.98, cos


def test_gpu_index_reads_the_ordinal_of_strings_and_devices():
    """``"cuda:1"`` is ordinal 1 (a string's ``.index`` is ``str.index``, which once went to
    ``SimpleDecoder`` as the GPU id); a CPU device is refused. Plain ``"cuda"`` needs a GPU."""
    from xclip_core.video.nvdec import gpu_index

    assert gpu_index("cuda:1") == 1
    assert gpu_index(torch.device("cuda", 3)) == 3
    with pytest.raises(ValueError, match="CUDA device"):
        gpu_index("cpu")
    if torch.cuda.is_available():
        assert gpu_index("cuda") == torch.cuda.current_device()
