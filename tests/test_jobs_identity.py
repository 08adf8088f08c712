"""The processing identity hashes the precision the encoder actors will really use (jobs.identity)."""
from __future__ import annotations

import dataclasses

from jobs.config import build_config
from jobs.incremental import processing_id
from jobs.identity import identity_encoder


@dataclasses.dataclass(frozen=True)
class Info:
    weights_sha256: str = "w"
    label_set_sha256: str = "l"


@dataclasses.dataclass(frozen=True)
class Decode:
    window_s: float = 2.0


def _cfg(**encoder):
    return build_config(None, {"reader": {"inputs": ["/v"]}, "encoder": {"model": "m", **encoder},
                               "writer": {"output": "/o"}})


def test_auto_precision_is_hashed_as_resolved_for_the_cluster():
    def pid(cfg, resources):
        return processing_id(Info(), Decode(), identity_encoder(cfg, resources))

    auto = _cfg()
    cpu_cluster, gpu_cluster = {"CPU": 16.0}, {"CPU": 16.0, "GPU": 4.0}
    assert identity_encoder(auto, cpu_cluster).precision == "fp32"
    assert identity_encoder(auto, gpu_cluster).precision == "bf16"
    # moving from a CPU cluster to a GPU cluster reprocesses; an explicit setting means the same rows
    assert pid(auto, cpu_cluster) != pid(auto, gpu_cluster)
    assert pid(auto, cpu_cluster) == pid(_cfg(precision="fp32"), gpu_cluster)
    assert pid(auto, gpu_cluster) == pid(_cfg(precision="bf16"), cpu_cluster)
    assert identity_encoder(_cfg(device="cpu"), None).precision == "fp32"  # no Ray needed to know
    assert identity_encoder(_cfg(device="cuda"), None).precision == "bf16"
