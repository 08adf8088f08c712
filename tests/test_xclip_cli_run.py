"""``xclip-index run`` (xclip_cli.run): clear errors with distinct exit codes, and one real run."""
from __future__ import annotations

import os
import subprocess

import pytest

from xclip_cli import EXIT_CONFIG, EXIT_INPUT, EXIT_LOCKED, EXIT_MODEL, EXIT_OUTPUT, main
from tests.cli_helpers import CLI
from tests.jobs_helpers import SECRET_ENV, all_output_bytes, make_corpus, read_lance



@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("model") / "m", preset="tiny", num_frames=4))


@pytest.fixture
def one_video(tmp_path):
    from xclip_core.video.synth import write_video

    write_video(tmp_path / "in" / "v.mp4", num_frames=30, width=32, height=32, fps=30)
    return str(tmp_path / "in")


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["run", *argv])
    return code, capsys.readouterr().err


def test_missing_arguments_exit_2():
    proc = subprocess.run([*CLI, "run", "--output", "o"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--input" in proc.stderr and "--model" in proc.stderr


def test_unloadable_model(capsys, tmp_path, one_video):
    code, err = _run(capsys, "--input", one_video, "--output", str(tmp_path / "o"),
                     "--model", str(tmp_path / "no-such-model"))
    assert code == EXIT_MODEL and "cannot load the model" in err and "no-such-model" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    code, err = _run(capsys, "--input", one_video, "--output", str(tmp_path / "o"), "--model", str(tmp_path / "broken"))
    assert code == EXIT_MODEL and "cannot load the model" in err


def test_bad_options_and_inputs(capsys, tmp_path, tiny_model, one_video):
    base = ["--output", str(tmp_path / "o"), "--model", tiny_model]
    code, err = _run(capsys, "--input", one_video, *base, "--batch-size", "0")
    assert code == EXIT_CONFIG and "encoder.batch_size" in err
    code, err = _run(capsys, "--input", str(tmp_path / "nowhere"), *base)
    assert code == EXIT_CONFIG and "no such folder" in err
    code, err = _run(capsys, "--input", one_video, *base, "--labels", str(tmp_path / "labels.txt"))
    assert code == EXIT_MODEL and "label set" in err
    (tmp_path / "job.toml").write_text("[encoder]\nprecison = 'fp16'\n")
    code, err = _run(capsys, "--input", one_video, *base, "--config", str(tmp_path / "job.toml"))
    assert code == EXIT_CONFIG and "precison" in err


def test_unwritable_output(capsys, tmp_path, tiny_model, one_video):
    (tmp_path / "file").write_text("a file, not a folder")
    code, err = _run(capsys, "--input", one_video, "--output", str(tmp_path / "file" / "out"), "--model", tiny_model)
    assert code == EXIT_OUTPUT and "--output" in err


@pytest.mark.slow
def test_cli_run_on_s3_starts_local_ray_and_keeps_secrets(s3_server, s3_bucket, tmp_path, tiny_model):
    corpus = make_corpus(s3_server, s3_bucket, tmp_path / "corpus")
    output = f"s3://{s3_bucket}/out"
    (tmp_path / "job.toml").write_text("[encoder]\nbatch_size = 2\ntop_k = 2\n[decoder]\nmax_clips_per_video = 2\n")
    labels = ["juggling balls", "surfing", "playing chess", "riding a bike", "baking cookies"]
    (tmp_path / "my labels.txt").write_text("# custom\n" + "\n".join(labels) + "\n")
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([*CLI, "run", *sum((["--input", i] for i in corpus["inputs"]), []), "--output", output,
                           "--model", tiny_model, "--config", str(tmp_path / "job.toml"), "--top-k", "4",
                           "--labels", str(tmp_path / "my labels.txt")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = len(corpus["ok"]) + len(corpus["failed"])
    assert f"{n} videos: {len(corpus['ok'])} ok, {len(corpus['failed'])} failed, 0 skipped" in proc.stdout, \
        [(v["uri"], v["error"]) for v in read_lance(output, "videos").to_pylist()]
    assert "clips/s" in proc.stdout and "seconds per stage" in proc.stdout
    videos = read_lance(output, "videos").to_pylist()
    assert len(videos) == n
    ok = [v for v in videos if v["status"] == "ok"]
    assert all(len(v["labels"]) == 4 and set(v["labels"]) <= set(labels) for v in ok)  # flag beats the file
    assert all(v["label_set"].startswith("my labels@") for v in videos)
    assert all(v["num_segments"] <= 2 for v in ok)  # from the file
    secret = os.environ[SECRET_ENV]
    assert secret not in proc.stdout and secret not in proc.stderr
    for key, body in all_output_bytes(output):
        assert secret.encode() not in body, key


def test_output_bucket_missing(capsys, s3_server, tiny_model, one_video):
    code, err = _run(capsys, "--input", one_video, "--output", "s3://no-such-bucket-xyz/out", "--model", tiny_model)
    assert code == EXIT_OUTPUT and "no-such-bucket-xyz" in err
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in err


def test_empty_input_finishes_without_ray(capsys, tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    code = main(["run", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o"), "--model", tiny_model])
    out = capsys.readouterr().out
    assert code == 0 and "0 videos: 0 ok, 0 failed, 0 skipped" in out
    runs = sorted(p.suffix for p in (tmp_path / "o" / "runs").iterdir())
    assert runs == [".html", ".json"]  # one run: its manifest and its report


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("xclip-index: error:")]
    assert len(lines) == 1 and "Traceback" not in err and ".rs:" not in err, err
    return lines[0]


def test_input_bucket_missing_or_endpoint_unreachable(capsys, s3_server, tmp_path, tiny_model, monkeypatch):
    out = str(tmp_path / "o")
    code, err = _run(capsys, "--input", "s3://no-such-bucket-xyz/videos/", "--output", out, "--model", tiny_model)
    assert code == EXIT_INPUT and "NoSuchBucket" in _error_line(err) and "no-such-bucket-xyz" in err
    from tests.conftest import free_port
    from xclip_core import storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage._s3fs.cache_clear()
    try:
        code, err = _run(capsys, "--input", "s3://bucket/videos/", "--output", out, "--model", tiny_model)
    finally:
        storage._s3fs.cache_clear()
    assert code == EXIT_INPUT and "EndpointUnreachable" in _error_line(err)
    assert not os.path.exists(os.path.join(out, "runs"))  # nothing written


def test_second_run_on_a_leased_output_refuses(capsys, tmp_path, tiny_model, one_video):
    from xclip_store.lease import Lease

    out = str(tmp_path / "o")
    with Lease(out, "other-run"):
        code, err = _run(capsys, "--input", one_video, "--output", out, "--model", tiny_model)
    assert code == EXIT_LOCKED and "in use by run other-run" in _error_line(err)
    assert not os.path.exists(os.path.join(out, "runs")) and not os.path.exists(os.path.join(out, "lancedb"))
def test_feature_flags_reach_the_config():
    from xclip_cli.cli import parser as _parser
    from xclip_cli.run import config_from_args

    base = ["run", "--input", "x", "--output", "o", "--model", "m"]
    cfg = config_from_args(_parser().parse_args(base))
    assert cfg.decoder.thumbnails is True and cfg.encoder.store_prompt_features is False
    assert cfg.decoder.decode.max_clips_per_video is None  # whole videos by default
    cfg = config_from_args(_parser().parse_args(base + ["--no-thumbnails", "--store-prompt-features"]))
    assert cfg.decoder.thumbnails is False and cfg.encoder.store_prompt_features is True
