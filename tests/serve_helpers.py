"""Shared pieces of the ``xclip-index serve`` tests: a small real index (the indexing job with a
moderation policy, on local Ray) and a real uvicorn server on a free loopback port."""
from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import yaml

TOKEN = "test-token-0123456789abcdef"
HOSTILE = "<img src=x onerror=alert(1)> \"it's\" & co.webm"   # a file name that must stay escaped
HOSTILE_LABEL = "<script>alert(2)</script>"
LABELS = ["riding a bike", "swimming", "playing guitar", "cooking", HOSTILE_LABEL, "it's\"; DROP"]
VIDEOS = {"plays.webm": 40, HOSTILE: 30, "other.webm": 30}   # name -> frames at 10 fps (VP9: plays in chromium)
POLICY = {"version": 1, "neutral": ["people talking"], "categories": [
    {"name": "everything", "prompts": ["a video"], "min_confidence": 0.0, "action": "review"}]}


def build_index(root: Path, *, run_id: str = "run-1") -> dict:
    """Videos (VP9 WebM, 3-4 s), one broken file, the tiny random model; one indexing run with a
    policy that sends every ok video to review (and the broken one to error)."""
    from jobs.runner import index_videos
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    model = str(write_random_checkpoint(root / "tiny-xclip", preset="tiny", num_frames=4))
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for name, n in VIDEOS.items():
        write_video(videos / name, num_frames=n, width=64, height=48, fps=10, codec="libvpx-vp9")
    (videos / "broken.mp4").write_bytes(b"not a video\n" * 100)
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    (root / "policy.yaml").write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    out = str(root / "index")
    index_videos([str(videos)], out, model, labels=str(root / "labels.txt"), run_id=run_id,
                 decoder={"window_s": 1.0}, encoder={"batch_size": 8, "top_k": 3, "policy": str(root / "policy.yaml")})
    return {"out": out, "model": model, "videos": videos, "root": root}


_PRISTINE: dict = {}


def index_copy(tmp_path_factory, name: str) -> dict:
    """A private copy of one index built once per test session (``build_index``; the videos, model,
    labels and policy stay shared, read-only). Starts a local Ray only for that one build."""
    if not _PRISTINE:
        from tests.conftest import own_ray

        import ray

        root = tmp_path_factory.mktemp("serve-pristine")
        if ray.is_initialized():
            _PRISTINE.update(build_index(root))
        else:
            with own_ray():
                _PRISTINE.update(build_index(root))
    out = tmp_path_factory.mktemp(name) / "index"
    shutil.copytree(_PRISTINE["out"], out)
    return {**_PRISTINE, "out": str(out)}


class Server:
    """uvicorn serving ``app`` in a thread on a free 127.0.0.1 port."""

    def __init__(self, app):
        import uvicorn

        from tests.conftest import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def serving(index_uri: str):
    from xclip_serve.app import ServeConfig, create_app

    with Server(create_app(ServeConfig(index=index_uri), token=TOKEN)) as s:
        yield s
