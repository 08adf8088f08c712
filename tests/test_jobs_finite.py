"""No ok row with a non-finite embedding (jobs.finite): the model check refuses a model that outputs NaN
(exit 3, nothing written); a clip whose outputs are not finite fails its video with a reason."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.assembler import RunIdentity, VideoAssembler
from jobs.config import DecoderConfig, EncoderConfig
from jobs.decoder import decode_batch, decode_config
from jobs.encoder import Encoder, ModelError, inspect_model
from jobs.labeler import Labeler
from jobs.runner import index_videos
from schemas.stream import INPUT_SCHEMA

CLI = str(Path(sys.executable).parent / "xclip-index")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from safetensors.torch import load_file, save_file

    from xclip_core.checkpoint import write_random_checkpoint

    root = tmp_path_factory.mktemp("finite")
    good = write_random_checkpoint(root / "good", preset="tiny", num_frames=4)
    bad = write_random_checkpoint(root / "nan", preset="tiny", num_frames=4)
    state = load_file(bad / "model.safetensors")
    state["visual_projection.weight"][0, 0] = float("nan")  # one corrupt weight
    save_file(state, bad / "model.safetensors", metadata={"format": "pt"})
    return {"root": root, "good": str(good), "nan": str(bad)}


def test_the_model_check_refuses_a_model_that_outputs_nan(models, tmp_path):
    assert inspect_model(EncoderConfig(model=models["good"])).dim > 0
    from xclip_core.video.synth import write_video

    write_video(tmp_path / "in" / "a.mp4", num_frames=15, width=32, height=32, fps=15)
    with pytest.raises(ModelError, match="NaN or infinity \\(the video embeddings\\)"):
        index_videos(str(tmp_path / "in"), str(tmp_path / "out"), models["nan"])
    assert not os.path.exists(tmp_path / "out")  # nothing written
    p = subprocess.run([CLI, "run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                        "--model", models["nan"]], capture_output=True, text=True, timeout=300)
    assert p.returncode == 3 and p.stderr.count("xclip-index: error:") == 1 and "NaN" in p.stderr, p.stderr[-2000:]


def test_a_clip_with_nan_outputs_fails_its_video_with_a_reason(models, tmp_path):
    """The encoder and assembler as the job runs them (in-process, no Ray), on a real decoded clip."""
    from xclip_core.video.synth import write_video

    uri = str(tmp_path / "a.mp4")
    write_video(uri, num_frames=30, width=32, height=32, fps=15)
    info = inspect_model(EncoderConfig(model=models["good"]))  # the NaN model would not pass the check
    dcfg = decode_config(DecoderConfig.from_settings(), frames_per_clip=info.num_frames,
                         crop_size=info.crop_size, shortest_edge=info.shortest_edge)
    inputs = pa.Table.from_pylist([{"video_id": "v", "uri": uri}], schema=INPUT_SCHEMA)
    decoded = pa.concat_tables(list(decode_batch(inputs, cfg=dcfg)))
    encoded = Encoder(EncoderConfig(model=models["nan"], batch_size=4))(decoded)
    clip_errors = [e for e, k in zip(encoded.column("error").to_pylist(), encoded.column("kind").to_pylist())
                   if k == "clip"]
    assert clip_errors and all("non-finite" in e for e in clip_errors)
    assert encoded.column("embedding").null_count == encoded.num_rows  # no NaN vector leaves the actor
    asm = VideoAssembler(dim=info.dim, labeler=Labeler(info.labels, 5), identity=RunIdentity("r", "m", "l"))
    segs, videos = asm.add(encoded)
    row = videos[0].to_pylist()[0]
    assert segs == [] and row["status"] == "failed" and "non-finite" in row["error"]
    assert row["embedding"] is None and asm.counts == {"failed": 1}
