"""Bad media is a result, a bug is an exception: the decode path under a PyAV
whose API changed (PyAV 19 removed ``av.open``'s metadata keywords and returns
falsy ``AVRational(0, 1)`` for unset rates), and an injected programming error."""
import fractions

import av
import numpy as np
import pytest

import video_fixtures as vf
from xclip_core.video import FAILED, OK, DecodeConfig, decode_video, iter_clips, probe
from xclip_core.video import meta as meta_mod
from xclip_core.video.errors import MEDIA_ERRORS, VideoError

REMOVED_IN_PYAV19 = ("metadata_errors", "metadata_encoding", "stream_options")


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    return vf.cached(tmp_path_factory.mktemp("videos"))


@pytest.fixture
def strict_av_open(monkeypatch):
    """``av.open`` as PyAV 19 has it: the removed keywords are a TypeError."""
    real_open = av.open

    def strict(*args, **kwargs):
        bad = sorted(set(kwargs) & set(REMOVED_IN_PYAV19))
        if bad:
            raise TypeError(f"open() got an unexpected keyword argument '{bad[0]}'")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", strict)
    return strict


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_decodes_under_pyav19_open_signature(videos, strict_av_open, backend):
    if backend == "decord":
        pytest.importorskip("decord", reason="decord not installed (optional extra `decord`)")
    r = decode_video(str(videos["h264_mp4"]), DecodeConfig(backend=backend))
    assert r.status == OK and r.reason is None, r.reason
    assert len(r.clips) == 1 and r.meta.num_frames == 75
    assert probe(str(videos["vfr"])).num_frames == len(vf.VFR_PTS)


def test_a_programming_error_raises_instead_of_a_failed_row(videos, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")

    monkeypatch.setattr(av, "open", broken)
    with pytest.raises(TypeError, match="metadata_errors"):
        decode_video(str(videos["h264_mp4"]))
    stream = iter_clips(str(videos["h264_mp4"]))
    with pytest.raises(TypeError):
        list(stream)
    assert stream.result.status == FAILED and "internal error: TypeError" in stream.result.reason


def test_a_bug_mid_decode_propagates(videos, monkeypatch):
    from xclip_core.video import decode as decode_mod

    def broken(*args, **kwargs):
        raise AttributeError("'VideoFrame' object has no attribute 'reformat'")

    monkeypatch.setattr(decode_mod, "frame_to_crop", broken)
    with pytest.raises(AttributeError, match="reformat"):
        decode_video(str(videos["h264_mp4"]))


def test_bad_media_is_still_a_row(videos, strict_av_open):
    for name in ("random", "text", "zero", "truncated"):
        r = decode_video(str(videos[name]))
        assert r.status == FAILED and r.reason, name
    assert decode_video(str(videos["audio_only"])).status == "skipped"


def test_media_errors_tuple():
    assert issubclass(av.error.InvalidDataError, MEDIA_ERRORS)
    assert issubclass(FileNotFoundError, MEDIA_ERRORS) and issubclass(VideoError, MEDIA_ERRORS)
    for bug in (TypeError, AttributeError, NameError, KeyError, ValueError, IndexError):
        assert not issubclass(bug, MEDIA_ERRORS), bug


@pytest.mark.parametrize("value, want", [
    (None, None), (fractions.Fraction(0, 1), None), (fractions.Fraction(30000, 1001), 30000 / 1001),
    (fractions.Fraction(1, 90000), 1 / 90000), (0, None), (25, 25.0), (0.0, None),
])
def test_rate_treats_unset_rationals_as_none(value, want):
    assert meta_mod.rate(value) == want


class _Packet:
    def __init__(self, pts, duration=0):
        self.pts, self.dts, self.duration, self.size = pts, pts, duration, 100


class _Stream:
    """Rationals as PyAV 19 reports them for a stream that leaves them unset."""

    def __init__(self, time_base, average_rate, guessed_rate):
        self.time_base, self.average_rate, self.guessed_rate = time_base, average_rate, guessed_rate


class _Container:
    def __init__(self, pts):
        self.pts = pts

    def demux(self, stream):
        return iter([_Packet(p) for p in self.pts])


@pytest.mark.parametrize("unset", [None, fractions.Fraction(0, 1)])
def test_index_with_unset_rationals(unset):
    # one packet without a duration: the last frame's length comes from the rate
    idx = meta_mod.index_stream(_Container([0]), _Stream(fractions.Fraction(1, 1000), unset,
                                                         fractions.Fraction(25, 1)))
    assert idx.time_base == 0.001 and idx.duration_s == pytest.approx(0.04)
    # no time base at all: milliseconds are assumed, no rate: zero-length last frame
    idx = meta_mod.index_stream(_Container([0, 40, 80]), _Stream(unset, unset, unset))
    assert idx.time_base == 0.001
    np.testing.assert_allclose(idx.times, [0, 0.04, 0.08])
    assert idx.duration_s == pytest.approx(0.12)


def test_rate_with_pyav19_rationals():
    rational = pytest.importorskip("av.rational", reason="PyAV < 19 has no av.rational.AVRational")
    assert meta_mod.rate(rational.AVRational(0, 1)) is None
    assert meta_mod.rate(rational.AVRational(30000, 1001)) == pytest.approx(29.97002997)
