"""moderation.policy: parsing, validation errors that name the file and key, content hash."""
from __future__ import annotations

import pytest
import yaml

from moderation.policy import EXAMPLE, PolicyError, load_policy, parse_policy

GOOD = """
version: 1
categories:
  - name: weapons
    prompts: ["a person holding a gun", "a person holding a knife"]
    min_confidence: 0.7
    min_duration_s: 1.5
    action: block
  - name: violence
    prompts: "people fighting"
    min_confidence: 0.5
    action: review
neutral: ["people talking", "a landscape"]
"""


def test_example_policy_loads():
    p = load_policy(EXAMPLE)
    assert len(p.categories) >= 3 and {"violence", "weapons", "nudity"} <= set(p.names)
    assert p.neutral and all(c.prompts for c in p.categories)
    assert p.num_classes == len(p.categories) + len(p.neutral)


def test_parse_and_class_prompts(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    p = load_policy(str(f))
    assert p.names == ("weapons", "violence")
    w, v = p.categories
    assert w.prompts == ("a person holding a gun", "a person holding a knife") and w.min_duration_s == 1.5
    assert v.prompts == ("people fighting",) and v.min_duration_s == 0.0 and v.action == "review"
    assert p.class_prompts == [list(w.prompts), ["people fighting"], ["people talking"], ["a landscape"]]


def test_hash_ignores_formatting_but_not_content(tmp_path):
    a = parse_policy(yaml.safe_load(GOOD))
    doc = yaml.safe_load(GOOD)
    reformatted = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
    assert parse_policy(yaml.safe_load(reformatted)).policy_hash == a.policy_hash
    doc["categories"][0]["min_confidence"] = 0.71
    assert parse_policy(doc).policy_hash != a.policy_hash
    assert a.policy_hash.startswith("sha256:") and len(a.sha256) == 64


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["categories"][0].update(colour="red"), "colour"),
    (lambda d: d["categories"][0].update(prompts=[]), "categories[0] (weapons).prompts"),
    (lambda d: d["categories"][0].update(prompts=["ok", "  "]), "categories[0] (weapons).prompts[1]"),
    (lambda d: d["categories"][0].update(min_confidence=1.5), "min_confidence"),
    (lambda d: d["categories"][0].update(min_confidence=-0.1), "min_confidence"),
    (lambda d: d["categories"][0].update(min_confidence="high"), "min_confidence"),
    (lambda d: d["categories"][0].update(min_duration_s=-1), "min_duration_s"),
    (lambda d: d["categories"][1].update(name="weapons"), "duplicate"),
    (lambda d: d["categories"][0].update(action="delete"), "action"),
    (lambda d: d.pop("neutral"), "neutral"),
    (lambda d: d.update(neutral=[]), "neutral"),
    (lambda d: d.update(categories=[]), "categories"),
])
def test_validation_errors_name_file_and_key(tmp_path, edit, key):
    doc = yaml.safe_load(GOOD)
    edit(doc)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(PolicyError) as e:
        load_policy(str(f))
    assert str(f) in str(e.value) and key in str(e.value), str(e.value)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(str(tmp_path / "missing.yaml"))
    f = tmp_path / "broken.yaml"
    f.write_text("categories: [unclosed\n")
    with pytest.raises(PolicyError, match="invalid YAML"):
        load_policy(str(f))


def test_load_from_s3(s3_server, s3_bucket):
    import boto3

    boto3.client("s3", endpoint_url=s3_server).put_object(Bucket=s3_bucket, Key="p/policy.yaml", Body=GOOD.encode())
    p = load_policy(f"s3://{s3_bucket}/p/policy.yaml")
    assert p.names == ("weapons", "violence") and p.source == f"s3://{s3_bucket}/p/policy.yaml"
