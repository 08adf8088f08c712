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
    assert cfg.decoder.decode.sampler == "tsn" and cfg.decoder.decode.window_s == 1.5
    assert cfg.reader.include == ("*.mp4",) and cfg.reader.inputs == ("s3://b/",)
    assert cfg.to_dict()["encoder"]["model"] == "m"


@pytest.mark.parametrize("file_values, overrides, match", [
    ({"encoder": {"bach_size": 3}}, {}, "unknown setting.*bach_size"),
    ({"encodr": {}}, {}, "unknown table"),
    ({}, {"encoder": {"precision": "fp8"}}, "encoder.precision"),
    ({}, {"encoder": {"batch_size": 0}}, "encoder.batch_size"),
    ({}, {"decoder": {"sampler": "uniform"}}, "decoder.sampler"),
    ({}, {"decoder": {"backend": "decord", "approximate": True}}, "decoder.approximate"),
    ({}, {"decoder": {"window_s": 0}}, r"^decoder\.window_s: must be > 0, got 0$"),
    ({"decoder": {"stride_s": -1.0}}, {}, r"^decoder\.stride_s: must be > 0"),
    ({"decoder": {"max_clips_per_video": 0}}, {}, r"^decoder\.max_clips_per_video: must be >= 1"),
    ({"decoder": {"max_duration_s": 0}}, {}, r"^decoder\.max_duration_s: must be > 0"),
    ({"decoder": {"timeout_s": 0}}, {}, r"^decoder\.timeout_s: must be > 0"),
    ({"decoder": {"max_pixels": 0}}, {}, r"^decoder\.max_pixels: must be >= 1"),
    ({"decoder": {"num_threads": -1}}, {}, r"^decoder\.num_threads: must be >= 0"),
    ({"decoder": {"nvdec_share": 1.5}}, {}, r"^decoder\.nvdec_share: must be between 0 and 1"),
    ({"decoder": {"backend": "nvdec"}}, {}, r"^decoder\.backend: expected one of \('pyav', 'decord'\)"),
    ({"decoder": {"backend": "vaapi"}}, {}, r"^decoder\.backend: expected one of"),
    ({"decoder": {"memory_mb": 0}}, {}, r"^decoder\.memory_mb: must be >= 1"),
    ({"decoder": {"frames_per_clip": 4}}, {}, r"unknown setting.*frames_per_clip"),  # from the model
    ({}, {"encoder": {"model": ""}}, "model source is required"),
    ({}, {"writer": {"output": ""}}, "output location is required"),
    ({}, {"reader": {"inputs": []}}, "at least one --input"),
    ({}, {"reader": {"extensions": []}}, "at least one extension"),
    ({"writer": {"writers": 0}}, {}, r"^writer\.writers: must be an integer >= 1"),
    ({"writer": {"writers": 2.5}}, {}, r"^writer\.writers: must be an integer >= 1"),
    ({"writer": {"writers": 4, "max_in_flight": 2}}, {}, r"^writer\.max_in_flight: must be 0 .* >= writer\.writers \(4\)"),
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


def test_decoder_keys_round_trip_and_job_defaults():
    """Every [decoder] key a job TOML can hold reaches the DecodeConfig or the job field it names,
    to_dict() gives the same flat keys back, and the job's defaults differ from the library's where
    they always did (nvdec_share automatic)."""
    from jobs.config import DECODE_KEYS, DecoderConfig

    settings = {"sampler": "tsn", "window_s": 3.0, "stride_s": 1.5, "max_clips_per_video": 7, "max_duration_s": 60.0,
                "timeout_s": 30.0, "max_pixels": 1000, "backend": "pyav", "approximate": True, "num_threads": 2,
                "nvdec_share": 0.25, "num_cpus": 2.0, "memory_mb": 512, "breaker_first_n": 3,
                "breaker_max_share": 0.25, "thumbnails": False, "cpu_clips_per_s": 9.0,
                "segments": "fixed", "shot_threshold": 3.5, "shot_min_score": 3.0, "shot_min_s": 1.0}
    base = {"reader": {"inputs": ["x/"]}, "encoder": {"model": "m"}, "writer": {"output": "o"}}
    cfg = build_config({"decoder": settings}, base)
    assert cfg.to_dict()["decoder"] == settings
    assert {k: getattr(cfg.decoder.decode, k) for k in DECODE_KEYS} == {k: settings[k] for k in DECODE_KEYS}
    default = build_config(None, base).decoder
    assert default == DecoderConfig() and default.decode.nvdec_share is None and default.decode.timeout_s == 300.0
    assert DecoderConfig.from_settings(timeout_s=None).decode.timeout_s >= 1e9  # None: no timeout


def test_writers_default_to_the_driver_and_build_the_pool_config():
    from xclip_store.write_pool import WritePoolConfig

    base = {"reader": {"inputs": ["x/"]}, "encoder": {"model": "m"}, "writer": {"output": "o"}}
    assert build_config(None, base).writer.writers == 1  # today's in-driver writes
    w = build_config({"writer": {"writers": 4}}, base).writer
    pool = WritePoolConfig(writers=w.writers, max_in_flight=w.max_in_flight)
    assert (pool.writers, pool.in_flight_limit, pool.batch_limit) == (4, 8, 8)
