"""infra/submit.sh: `ray job submit -- xclip-index run ...` against a real Ray head with its job server."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import schemas
from tests.conftest import free_port
from tests.jobs_helpers import read_lance

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    pytest.importorskip("ray.dashboard.modules.job", reason="ray job submit needs ray[default]")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "disabled"}
    ray_bin = shutil.which("ray", path=env["PATH"])
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="xr", dir="/tmp")  # our head's own: short (socket paths), unique
    start = [ray_bin, "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard", "true",
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--disable-usage-stats",
             "--temp-dir", temp_dir]
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
        yield env, f"http://127.0.0.1:{dash}"
    finally:
        # not a forced `ray stop`, which kills every Ray process of the user: only this head's processes
        _stop_processes_of(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _pids_of(temp_dir: str) -> list[int]:
    """Processes of the head we started: every one of them names its own --temp-dir/session dir."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if temp_dir.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _stop_processes_of(temp_dir: str, grace_s: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_of(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace_s
        while _pids_of(temp_dir) and time.time() < deadline:
            time.sleep(0.2)
    assert not _pids_of(temp_dir), "the Ray head we started did not stop"


def test_submit_script_runs_the_job_on_the_cluster(ray_head, tmp_path):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    env, address = ray_head
    model = write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4)
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", num_frames=60, width=48, height=40, fps=15)
    write_video(videos / "b.mkv", num_frames=30, width=40, height=48, fps=15)
    (videos / "bad.mp4").write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(ROOT / "infra" / "submit.sh"), str(videos), str(out), str(model),
         "--precision", "fp32", "--batch-size", "4", "--run-id", "submitted"],
        env={**env, "RAY_ADDRESS": address}, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "succeeded" in log and "3 videos: 2 ok, 1 failed, 0 skipped" in log, log[-3000:]
    rows = {Path(r["uri"]).name: r for r in read_lance(str(out), schemas.VIDEOS_TABLE).to_pylist()}
    assert {k: v["status"] for k, v in rows.items()} == {"a.mp4": "ok", "b.mkv": "ok", "bad.mp4": "failed"}
    assert {v["run_id"] for v in rows.values()} == {"submitted"}
    assert (out / "runs" / "submitted.json").exists()
