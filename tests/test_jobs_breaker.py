"""The breaker (unit) and fail-loud runs end to end: real local Ray whose workers
open containers with PyAV 19's ``av.open`` signature (tests/pyav19_strict.py),
tiny model, generated videos on local disk."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import schemas
from jobs.breaker import Breaker, BreakerTripped, normalise
from xclip_cli import EXIT_INTERNAL, EXIT_OK, main
from jobs.runner import InternalError, index_videos
from schemas.manifest import RunManifest
from tests.jobs_helpers import read_lance
from xclip_core import storage

TESTS = Path(__file__).resolve().parent


def _videos(*rows):
    return pa.table({"status": [r[0] for r in rows], "error": [r[1] for r in rows]})


BAD = "cannot open container: InvalidDataError: [Errno 1094995529] Invalid data found when processing input: '{}'"


def test_normalise_strips_paths_uris_and_numbers():
    a = normalise(BAD.format("/data/a b/x1.mp4"))
    assert a == normalise(BAD.format("s3://bucket/v/2.mkv")) == normalise(BAD.format("/tmp/9.avi"))
    assert "1094995529" not in a and "x1" not in a and a.startswith("cannot open container: InvalidDataError")
    assert normalise("not found") != normalise("cannot stat: PermissionError: denied")


def test_first_n_all_alike_trips():
    b = Breaker(first_n=3, max_share=1.0)
    b.observe(_videos(("failed", BAD.format("/a/1.mp4")), ("failed", BAD.format("/b/2.mp4"))))
    with pytest.raises(BreakerTripped, match=r"first 3 finished videos all failed.*Invalid data"):
        b.observe(_videos(("failed", BAD.format("/c/3.mp4"))))


def test_first_n_with_different_reasons_or_an_ok_does_not_trip():
    b = Breaker(first_n=3, max_share=1.0)
    b.observe(_videos(("failed", BAD.format("/a.mp4")), ("failed", "not found"), ("failed", BAD.format("/b.mp4"))))
    b = Breaker(first_n=3, max_share=1.0)
    b.observe(_videos(("failed", BAD.format("/a.mp4")), ("ok", None), ("failed", BAD.format("/b.mp4")),
                      ("failed", BAD.format("/c.mp4"))))


def test_share_trips_only_past_first_n_and_over_the_share():
    b = Breaker(first_n=4, max_share=0.5)
    b.observe(_videos(("failed", "not found"), ("failed", "not found"), ("ok", None)))  # 3 < first_n
    b.observe(_videos(("ok", None)))                     # 2 of 4 = 50%: not over
    b.observe(_videos(("skipped", "too long: 9 s"), ("ok", None)))  # skipped is not a failure
    b.observe(_videos(("failed", "not found"), ("failed", "not found")))  # 4 of 8: not over
    with pytest.raises(BreakerTripped, match=r"5 of 9 finished videos \(56%"):
        b.observe(_videos(("failed", "not found")))


def test_off_and_validation():
    b = Breaker(first_n=0, max_share=0.5)
    b.observe(_videos(*[("failed", "not found")] * 50))
    for kw in ({"first_n": -1, "max_share": 0.5}, {"first_n": 3, "max_share": 0.0}, {"first_n": 3, "max_share": 1.5}):
        with pytest.raises(ValueError):
            Breaker(**kw)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def ray_session():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS)] + ([old] if old else []))
    try:  # every worker opens containers with PyAV 19's av.open signature
        # address="local": a new Ray of our own, never another test run's cluster on this machine
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 runtime_env={"worker_process_setup_hook": "pyav19_strict.install"})
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny-xclip", preset="tiny", num_frames=4))


def _good(folder: Path, n: int, prefix: str = "good") -> list[str]:
    from xclip_core.video.synth import write_video

    folder.mkdir(parents=True, exist_ok=True)
    return [str(write_video(folder / f"{prefix}{i}.mp4", num_frames=45, width=48, height=40, fps=30)) for i in range(n)]


def _corrupt(folder: Path, n: int) -> list[str]:
    out = []
    for i in range(n):
        p = folder / f"corrupt{i}.mp4"
        p.write_bytes(np.random.default_rng(i).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        out.append(str(p))
    return out


def _truncated(folder: Path) -> str:
    from xclip_core.video.synth import write_video

    full = write_video(folder / "full.mp4", num_frames=150, width=48, height=40, fps=30,
                       container_options={"movflags": "faststart"})
    cut = folder / "truncated.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    full.unlink()
    return str(cut)


def _manifest(output: str, run_id: str) -> RunManifest:
    return RunManifest.from_json(storage.read_bytes(storage.join(output, "runs", f"{run_id}.json")).decode())


OPTS = {"encoder": {"batch_size": 4, "top_k": 2}}


@pytest.mark.slow
def test_pyav19_signature_a_few_corrupt_files_and_a_partial_read(ray_session, tiny_model, tmp_path):
    """Under PyAV 19's av.open the job indexes the good videos (the old code gave every one a failed row);
    2 corrupt files among 7 others do not trip the breaker; a truncated file is ok, partial, counted."""
    good = _good(tmp_path / "in", 6)
    bad = _corrupt(tmp_path / "in", 2)
    cut = _truncated(tmp_path / "in")
    out = str(tmp_path / "out")
    summary = index_videos(str(tmp_path / "in"), out, tiny_model, run_id="mix",
                           decoder={"breaker_first_n": 4, "breaker_max_share": 0.5}, **OPTS)
    assert summary.counts == {"ok": 7, "failed": 2, "skipped": 0, "unchanged": 0, "deleted": 0}
    assert summary.num_partial == 1 and "(1 of the ok partial)" in summary.format()
    rows = {Path(r["uri"]).name: r for r in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()}
    assert all(rows[Path(u).name]["status"] == "ok" and rows[Path(u).name]["error"] is None for u in good)
    assert all(rows[Path(u).name]["status"] == "failed" for u in bad)
    partial = rows[Path(cut).name]
    assert partial["status"] == "ok" and partial["error"].startswith("partial: truncated"), partial
    assert partial["num_segments"] >= 1
    m = _manifest(out, "mix")
    assert m.status == "finished" and m.num_partial == 1 and m.counts["ok"] == 7


@pytest.mark.slow
def test_an_injected_bug_fails_the_run_and_writes_no_failed_rows(ray_session, tiny_model, tmp_path, capsys):
    _good(tmp_path / "in", 3)
    _good(tmp_path / "in", 1, prefix="inject-bug")  # av.open raises TypeError for this one (pyav19_strict)
    out = str(tmp_path / "out")
    code = main(["run", "--input", str(tmp_path / "in"), "--output", out, "--model", tiny_model,
                 "--run-id", "bug", "--batch-size", "4"])
    assert code == EXIT_INTERNAL
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("xclip-index: error:"))
    assert "internal error" in line and "TypeError: open() got an unexpected keyword argument" in line, line
    assert "left unwritten" in line
    assert _manifest(out, "bug").status == "failed"
    try:
        videos = read_lance(out, schemas.VIDEOS_TABLE).to_pylist()
    except Exception:  # noqa: BLE001  no videos row at all is fine too
        videos = []
    assert all(v["status"] == "ok" for v in videos), videos  # nothing claims an input was bad
    assert not any("inject-bug" in v["uri"] for v in videos)


@pytest.mark.slow
def test_breaker_trips_when_every_video_fails_alike(ray_session, tiny_model, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    _corrupt(tmp_path / "in", 5)
    out = str(tmp_path / "out")
    with pytest.raises(InternalError, match=r"breaker tripped: the first 3 finished videos all failed"):
        index_videos(str(tmp_path / "in"), out, tiny_model, run_id="trip",
                     decoder={"breaker_first_n": 3, "breaker_max_share": 0.5}, **OPTS)
    assert _manifest(out, "trip").status == "failed"
    # the same corpus with the breaker off: a normal run with 5 failed rows, exit 0
    code = main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out2"), "--model", tiny_model,
                 "--run-id", "off", "--config", str(_toml(tmp_path, "[decoder]\nbreaker_first_n = 0\n"))])
    assert code == EXIT_OK
    assert _manifest(str(tmp_path / "out2"), "off").counts == {"ok": 0, "failed": 5, "skipped": 0, "unchanged": 0, "deleted": 0}


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "job.toml"
    p.write_text(text)
    return p
