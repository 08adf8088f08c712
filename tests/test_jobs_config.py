import pytest

from jobs.config import ConfigError, build_config, load_toml


def test_toml_then_overrides(tmp_path):
    p = tmp_path / "job.toml"
    p.write_text('[encoder]\nbatch_size = 4\nprecision = "bf16"\ntop_k = 3\n'
                 '[decoder]\nsampler = "tsn"\nwindow_s = 1.5\n[reader]\ninclude = ["*.mp4"]\n')
    cfg = build_config(load_toml(str(p)), {"reader": {"inputs": ["s3://b/"]},
                                           "encoder": {"model": "m", "batch_size": 8, "top_k": None},
                                           "writer": {"output": "/o"}})
    assert cfg.encoder.batch_size == 8 and cfg.encoder.precision == "bf16" and cfg.encoder.top_k == 3
    assert cfg.decoder.sampler == "tsn" and cfg.decoder.window_s == 1.5
    assert cfg.reader.include == ("*.mp4",) and cfg.reader.inputs == ("s3://b/",)
    assert cfg.to_dict()["encoder"]["model"] == "m"


@pytest.mark.parametrize("file_values, overrides, match", [
    ({"encoder": {"bach_size": 3}}, {}, "unknown setting.*bach_size"),
    ({"encodr": {}}, {}, "unknown table"),
    ({}, {"encoder": {"precision": "fp8"}}, "encoder.precision"),
    ({}, {"encoder": {"batch_size": 0}}, "encoder.batch_size"),
    ({}, {"decoder": {"sampler": "uniform"}}, "decoder.sampler"),
    ({}, {"decoder": {"backend": "decord", "approximate": True}}, "decoder.approximate"),
    ({}, {"encoder": {"model": ""}}, "model source is required"),
    ({}, {"writer": {"output": ""}}, "output location is required"),
    ({}, {"reader": {"inputs": []}}, "at least one --input"),
    ({}, {"reader": {"extensions": []}}, "at least one extension"),
])
def test_validation_names_the_setting(file_values, overrides, match):
    base = {"reader": {"inputs": ["x/"]}, "encoder": {"model": "m"}, "writer": {"output": "o"}}
    for stage, values in overrides.items():
        base.setdefault(stage, {}).update(values)
    with pytest.raises(ConfigError, match=match):
        build_config(file_values, base)


def test_run_id_names_files_safely():
    base = {"reader": {"inputs": ["x/"]}, "encoder": {"model": "m"}, "writer": {"output": "o"}}
    assert build_config(None, base, run_id="2026-11-26_a.1").run_id == "2026-11-26_a.1"
    with pytest.raises(ConfigError, match="run_id"):
        build_config(None, base, run_id="../x")


def test_bad_toml(tmp_path):
    p = tmp_path / "job.toml"
    p.write_text("[encoder\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_toml(str(p))
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(str(tmp_path / "missing.toml"))
