"""infra/: every manifest parses, the cluster YAML passes Ray's own config validation, entry points
exist in xclip_cli's parser, one worker image and one Ray version (the installed one) everywhere,
S3 access from roles / service accounts only, never inline secrets."""
from __future__ import annotations

import json
import re
import shlex
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from jobs.cluster import DECODE_RESOURCE

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> dict[str, dict]:
    """kind/name -> document, over every manifest in infra/k8s."""
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for d in _docs(path):
            meta = d.get("metadata") or {}
            out[f"{d['kind']}/{meta.get('name') or meta.get('generateName') or path.stem}"] = d
    return out


def _containers(doc) -> list[dict]:
    """Every container spec anywhere in a manifest."""
    found = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "containers":
                found.extend(v)
            else:
                found.extend(_containers(v))
    elif isinstance(doc, list):
        for v in doc:
            found.extend(_containers(v))
    return found


def _rayjob() -> dict:
    (job,) = [d for k, d in _k8s().items() if k.startswith("RayJob/")]
    return job


def _dockerfile_ray_version() -> str:
    m = re.search(r"^ARG RAY_VERSION=(\S+)$", (INFRA / "Dockerfile").read_text(), re.M)
    assert m, "infra/Dockerfile must set ARG RAY_VERSION"
    return m.group(1)


def test_every_manifest_parses():
    files = sorted(INFRA.rglob("*.yaml"))
    assert {f.relative_to(INFRA).as_posix() for f in files} >= {
        "cluster.yaml", "k8s/rayjob.yaml", "k8s/cronjob.yaml", "k8s/serviceaccount.yaml", "k8s/kustomization.yaml"}
    for f in files:
        for d in _docs(f):
            assert isinstance(d, dict), f
            if f.parent == K8S:
                assert d.get("apiVersion") and d.get("kind"), f
    tomllib.loads((INFRA / "job.toml").read_text())


def test_cluster_yaml_passes_rays_own_validation():
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((INFRA / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's checks, defaults filled in as `ray up` does
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):  # the check bites: a misspelt key is refused
        jsonschema.validate({**config, "setup_command": []}, schema)
    types = config["available_node_types"]
    assert types["cpu_decode"]["resources"].get(DECODE_RESOURCE, 0) >= 1
    assert types["cpu_decode"]["min_workers"] >= 1  # the planner sees xclip_decode only on a live node
    assert types["gpu_encode"]["resources"].get("GPU", 0) >= 1
    assert DECODE_RESOURCE not in types["gpu_encode"]["resources"]


def test_one_ray_version_everywhere_equal_to_the_installed_one():
    ray_version = version("ray")
    assert _dockerfile_ray_version() == ray_version
    assert _rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == ray_version
    images = {yaml.safe_load((INFRA / "cluster.yaml").read_text())["docker"]["image"]}
    images |= {c["image"] for d in _k8s().values() for c in _containers(d) if "xclip-index" in c["image"]}
    assert len(images) == 1, f"one worker image everywhere, got {images}"
    assert next(iter(images)).endswith(f"-ray{ray_version}")
    for lock in [*ROOT.glob("*.lock"), *ROOT.glob("requirements*.txt"), *ROOT.glob("constraints*.txt")]:
        pins = re.findall(r"^ray(?:\[[^\]]*\])?==([^\s;#]+)", lock.read_text(), re.M)
        assert set(pins) <= {ray_version}, f"{lock.name} pins Ray {pins}, infra uses {ray_version}"


def test_worker_image_python_meets_requires_python():
    m = re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py3(\d+)-gpu$", (INFRA / "Dockerfile").read_text(), re.M)
    assert m, "the worker image is Ray's own image at RAY_VERSION (GPU, Python 3.x)"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = int(re.fullmatch(r">=\s*3\.(\d+)", requires).group(1))
    assert int(m.group(1)) >= minor
    text = (INFRA / "Dockerfile").read_text()
    assert "pynvvideocodec" in text and "download.pytorch.org/whl/cu" in text  # CUDA torch + NVDEC


def _run_flags(argv: list[str]):
    from xclip_cli.cli import entry, parser as _parser

    assert argv[0] == "xclip-index"
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["xclip-index"] == "xclip_cli.cli:entry"
    assert callable(entry)
    return _parser().parse_args(argv[1:])  # SystemExit on a flag the CLI does not have


def test_entry_points_use_flags_the_cli_has():
    args = _run_flags(shlex.split(_rayjob()["spec"]["entrypoint"]))
    assert args.command == "run" and args.max_gpus >= 1 and args.skip_unchanged
    # --config names job.toml where the Dockerfile copies the repository
    workdir = re.search(r"^WORKDIR (\S+)$", (INFRA / "Dockerfile").read_text(), re.M).group(1)
    assert Path(args.config).relative_to(workdir) == Path("infra/job.toml")
    flags = re.search(r"-- (xclip-index run .*)$", (INFRA / "submit.sh").read_text(), re.M).group(1)
    _run_flags(shlex.split(flags.replace('"${@:4}"', "").replace('"$INPUT"', "i").replace('"$OUTPUT"', "o")
                           .replace('"$MODEL"', "m")))
    with pytest.raises(SystemExit):
        _run_flags(["xclip-index", "run", "--input", "i", "--output", "o", "--model", "m", "--no-such-flag"])


def test_rayjob_groups_and_the_nightly_cronjob():
    spec = _rayjob()["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    decode, gpu = groups["cpu-decode"], groups["gpu-encode"]
    assert DECODE_RESOURCE in decode["rayStartParams"]["resources"] and decode["minReplicas"] >= 1
    assert gpu["minReplicas"] == 0 and gpu["rayStartParams"]["num-gpus"] == "1"
    (gpu_container,) = gpu["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in str(spec["headGroupSpec"]) + str(decode)
    # every Ray pod uses the IRSA service account
    docs = _k8s()
    account = docs["ServiceAccount/xclip-index"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in groups.values()]
    assert {p["serviceAccountName"] for p in pods} == {"xclip-index"}
    # the CronJob creates the RayJob from the ConfigMap kustomize generates from rayjob.yaml
    cron = docs["CronJob/xclip-index-nightly"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert f"ServiceAccount/{pod['serviceAccountName']}" in docs
    kust = docs["Kustomization/kustomization"]
    (gen,) = kust["configMapGenerator"]
    assert gen["files"] == ["rayjob.yaml"] and all((K8S / r).exists() for r in kust["resources"])
    (volume,) = pod["volumes"]
    (container,) = pod["containers"]
    mount = container["volumeMounts"][0]
    assert volume["configMap"]["name"] == gen["name"] and mount["name"] == volume["name"]
    assert container["command"][:3] == ["kubectl", "create", "-f"]
    assert container["command"][3] == f"{mount['mountPath']}/rayjob.yaml"
    role = docs["Role/xclip-index-submitter"]
    assert any("rayjobs" in r["resources"] and "create" in r["verbs"] for r in role["rules"])


_SECRET_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",                                   # an AWS access key id
    r"(?i)aws_secret_access_key|aws_session_token",       # credential variables set inline
    r"(?i)(password|passwd|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}",
    r"(?i)^\s*kind:\s*Secret\b",
]


def test_no_inline_secrets():
    files = [p for p in INFRA.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        for pattern in _SECRET_PATTERNS:
            assert not re.search(pattern, text, re.M), f"{path.relative_to(ROOT)}: looks like a secret ({pattern})"
    # the scan finds what it is meant to find
    assert re.search(_SECRET_PATTERNS[0], "key: AKIAIOSFODNN7EXAMPLE")
    assert re.search(_SECRET_PATTERNS[2], "password: hunter2hunter2", re.M)
    envs = [e for d in _k8s().values() for c in _containers(d) for e in c.get("env", [])]
    assert not [e for e in envs if "AWS_" in e.get("name", "") and "KEY" in e.get("name", "")]
