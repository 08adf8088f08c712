"""--policy runs (real local Ray, tiny random model) and ``xclip-index moderate`` from stored
features: decisions per input, error rows, full coverage, review queue on S3, the HTML report."""
from __future__ import annotations

import html.parser
import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import schemas
from jobs.config import ConfigError, build_config
from schemas.moderation import MODERATION_TABLE
from tests.conftest import own_ray
from tests.jobs_helpers import read_lance

NUM_FRAMES = 4
VIDEOS = {"long.mp4": (200, 10), "a.mp4": (30, 10), "b.mp4": (45, 15)}  # name -> (frames, fps): 20 s, 3 s, 3 s
RICH = {"copy.webm": 1, "other.mp4": 11}  # rich content (seed); the blocklist holds seed 1's original
OK = [*VIDEOS, *RICH]


def _policy_doc(threshold: float) -> dict:
    return {"version": 1, "neutral": ["people talking", "a landscape"], "categories": [
        {"name": "weapons", "prompts": ["a person holding a gun", "a person holding a knife"],
         "min_confidence": threshold, "action": "block"},
        {"name": "everything", "prompts": ["a video"], "min_confidence": 0.0, "action": "review"},
        {"name": "never", "prompts": ["an elephant"], "min_confidence": 1.0, "min_duration_s": 1.0,
         "action": "block"}]}


# ------------------------------------------------------------------ config (no Ray)
def _cfg(**decoder):
    return build_config(None, {"reader": {"inputs": ["x/"]}, "writer": {"output": "o"}, "decoder": decoder,
                               "encoder": {"model": "m", "policy": "example"}})


def test_policy_forces_full_coverage_and_rejects_a_clip_cap():
    assert _cfg().decoder.decode.max_clips_per_video is None
    with pytest.raises(ConfigError, match="max_clips_per_video = 8.*every window"):
        _cfg(max_clips_per_video=8)


# ------------------------------------------------------------------ job
@pytest.fixture(scope="module")
def ray_session(s3_server):
    with own_ray():
        yield


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Videos, the tiny model, and per-clip reference scores computed without the job."""
    import torch

    from jobs.config import DecoderConfig
    from jobs.decoder import decode_config
    from moderation.policy import parse_policy
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.model import XCLIP
    from xclip_core.preprocess import PreprocessConfig, preprocess
    from xclip_core.scoring import ClipScorer, class_text_features
    from xclip_core.tokenizer import CLIPTokenizer
    from xclip_core.video import decode_video
    from tests.moderation_helpers import encode, rich_frames
    from xclip_core.video.synth import write_video

    root = tmp_path_factory.mktemp("mod")
    model_dir = str(write_random_checkpoint(root / "tiny-xclip", preset="tiny", num_frames=NUM_FRAMES))
    for name, (n, fps) in VIDEOS.items():
        write_video(root / "in" / name, num_frames=n, width=48, height=32, fps=fps)
    encode(root / "bad" / "bad1.mp4", rich_frames(1))
    encode(root / "in" / "copy.webm", rich_frames(1)[4:], codec="libvpx-vp9", options={"crf": "36", "b:v": "0"})
    encode(root / "in" / "other.mp4", rich_frames(11))
    (root / "in" / "broken.mp4").write_bytes(b"not a video\n" * 100)
    dcfg = decode_config(DecoderConfig.from_settings(max_clips_per_video=None), frames_per_clip=NUM_FRAMES, crop_size=32,
                         shortest_edge=32)
    model = XCLIP.from_pretrained(model_dir)
    text = class_text_features(model, CLIPTokenizer.from_pretrained(model_dir),
                               parse_policy(_policy_doc(0.5)).class_prompts)  # thresholds do not change texts
    ref = {}
    for name in OK:
        uri = str(root / "in" / name)
        r = decode_video(uri, dcfg)
        with torch.inference_mode():
            f = model.encode_video(preprocess(torch.from_numpy(np.stack([c.frames for c in r.clips])),
                                              PreprocessConfig.from_pretrained(model_dir)))
            probs = ClipScorer(model, text).probs(f.video_embeds, f.visual_tokens).numpy()
        ref[schemas.video_id(uri)] = {"starts": [c.start_s for c in r.clips], "ends": [c.end_s for c in r.clips],
                                      "probs": probs,
                                      "tokens": f.visual_tokens.numpy()}
    # a weapons threshold in the widest gap between clip scores: some clips fire, some do not
    w = np.sort(np.concatenate([v["probs"][:, 0] for v in ref.values()]))
    mid = w[len(w) // 4: 3 * len(w) // 4 + 1]
    i = int(np.argmax(np.diff(mid)))
    threshold = float((mid[i] + mid[i + 1]) / 2)
    assert mid[i + 1] - mid[i] > 1e-4  # far wider than float16 token rounding (~1e-7 here)
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(_policy_doc(round(threshold, 6))))
    return {"root": root, "model": model_dir, "ref": ref, "policy": str(policy), "threshold": threshold,
            "gap": float(mid[i + 1] - mid[i])}


@pytest.fixture(scope="module")
def policy_run(ray_session, setup, s3_server):
    import boto3

    from jobs.runner import index_videos

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="mod-review")
    output = str(setup["root"] / "index")
    summary = index_videos([str(setup["root"] / "in")], output, setup["model"], run_id="mod-1",
                           encoder={"batch_size": 4, "policy": setup["policy"],
                                    "blocklist": str(setup["root"] / "bad")},
                           writer={"review_out": "s3://mod-review/queue/run.jsonl"})
    return output, summary


def _by_uri(rows):
    return {r["uri"]: r for r in rows}


@pytest.mark.slow
def test_one_decision_per_input_with_errors_and_full_coverage(policy_run, setup):
    output, summary = policy_run
    rows = _by_uri(read_lance(output, MODERATION_TABLE).to_pylist())
    root = setup["root"] / "in"
    assert set(rows) == {str(root / n) for n in [*OK, "broken.mp4"]}
    broken = rows[str(root / "broken.mp4")]
    assert broken["decision"] == "error" and broken["error"].startswith("failed:") and broken["flags"] == []
    from moderation.policy import load_policy

    h = load_policy(setup["policy"]).policy_hash
    long_row = rows[str(root / "long.mp4")]
    videos = _by_uri(read_lance(output, schemas.VIDEOS_TABLE).to_pylist())
    assert videos[str(root / "long.mp4")]["num_segments"] == 10  # 20 s in 2 s windows: no 64-clip cap, all scored
    assert long_row["coverage"] == pytest.approx(1.0, abs=0.02)
    for name in OK:
        r = rows[str(root / name)]
        assert r["policy_hash"] == h and r["run_id"] == "mod-1" and r["score_mode"] == "exact"
        assert r["decision"] in ("review", "block") and r["error"] is None
        # "everything" (threshold 0) fires on every clip: one range from the first clip to the last
        every = [f for f in r["flags"] if f["category"] == "everything"]
        assert len(every) == 1 and every[0]["start_s"] == 0.0
        assert every[0]["end_s"] == pytest.approx(videos[str(root / name)]["duration_s"], abs=0.3)
        assert not [f for f in r["flags"] if f["category"] == "never"]
    assert summary.tables[MODERATION_TABLE]["rows"] == 6
    log = pq.read_table(summary.tables[MODERATION_TABLE]["parquet"])
    assert log.num_rows == 6 and set(log.column("decision").to_pylist()) >= {"error"}


@pytest.mark.slow
def test_run_decisions_follow_the_clip_scores(policy_run, setup):
    """Weapons ranges in the table are where the reference clip scores (computed without the
    job) cross the threshold: block exactly for the videos with a firing clip (or a blocklist match)."""
    output, _ = policy_run
    rows = {r["video_id"]: r for r in read_lance(output, MODERATION_TABLE).to_pylist()}
    fired = total = 0
    for vid, ref in setup["ref"].items():
        w = ref["probs"][:, 0]
        above = [k for k, p in enumerate(w) if p >= setup["threshold"]]
        weapons = [f for f in rows[vid]["flags"] if f["category"] == "weapons"]
        listed = any(f["category"].startswith("blocklist:") for f in rows[vid]["flags"])
        assert (rows[vid]["decision"] == "block") == (bool(above) or listed)
        # every firing clip lies in a range; every range starts and ends with a firing clip
        assert all(any(f["start_s"] <= ref["starts"][k] < f["end_s"] for f in weapons) for k in above)
        for f in weapons:
            assert f["start_s"] in [ref["starts"][k] for k in above]
            assert f["end_s"] in [ref["ends"][k] for k in above]
            inside = [w[k] for k in above if f["start_s"] <= ref["starts"][k] < f["end_s"]]
            assert f["confidence"] == pytest.approx(max(inside), abs=1e-4)
        fired, total = fired + len(above), total + len(w)
    assert 0 < fired < total  # the threshold separates clips


@pytest.mark.slow
def test_review_queue_on_s3_most_severe_first(policy_run, s3_server):
    import boto3

    body = boto3.client("s3", endpoint_url=s3_server).get_object(Bucket="mod-review", Key="queue/run.jsonl")["Body"]
    items = [json.loads(line) for line in body.read().decode().splitlines()]
    assert len(items) == len(OK) + 1  # the broken upload is not cleared: it is queued, last, with its reason
    *scored, broken = items
    assert (broken["decision"], broken["name"]) == ("error", "broken.mp4") and broken["error"].startswith("failed:")
    assert all(i["ranges"] and i["error"] is None for i in scored)
    sev = [0 if i["decision"] == "block" else 1 for i in scored]
    assert sev == sorted(sev)
    for a, b in zip(items, items[1:]):
        if a["decision"] == b["decision"]:
            assert a["confidence"] >= b["confidence"]


class _ReportParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self._table, self._cell, self.items, self.histograms = {}, None, None, [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("class"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "li":
            self.items.append(a.get("data-decision"))
        elif tag == "pre":
            self.histograms.append(a.get("data-category"))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._table is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None


@pytest.mark.slow
def test_html_report_counts(policy_run):
    output, summary = policy_run
    report = summary.tables[MODERATION_TABLE]["report"]
    assert report.endswith("runs/mod-1-moderation.html")
    p = _ReportParser()
    p.feed(open(report, encoding="utf-8").read())
    rows = read_lance(output, MODERATION_TABLE).to_pylist()
    decisions = {d: int(n) for d, n in p.tables["decisions"][1:]}
    assert decisions == {d: sum(r["decision"] == d for r in rows) for d in ("allow", "review", "block", "error")}
    flagged = {r[0]: int(r[3]) for r in p.tables["categories"][1:]}
    assert flagged == {"weapons": sum(any(f["category"] == "weapons" for f in r["flags"]) for r in rows),
                       "everything": len(OK), "never": 0}
    assert p.histograms == ["weapons", "everything", "never"]
    assert len(p.items) == len(OK) + 1 and p.items[0] == "block" and p.items[-1] == "error"  # + broken.mp4


@pytest.mark.slow
def test_blocklist_blocks_the_copy_only_and_stores_frame_hashes(policy_run, setup):
    output, summary = policy_run
    rows = _by_uri(read_lance(output, MODERATION_TABLE).to_pylist())
    root = setup["root"] / "in"
    hits = {name: [f for f in rows[str(root / name)]["flags"] if f["category"].startswith("blocklist:")]
            for name in OK}
    assert [f["category"] for f in hits["copy.webm"]] == ["blocklist:bad1.mp4"]
    assert rows[str(root / "copy.webm")]["decision"] == "block"
    f = hits["copy.webm"][0]
    assert f["start_s"] == 0.0 and f["end_s"] >= 6.0 and 0.8 <= f["confidence"] <= 1.0
    (ev,) = rows[str(root / "copy.webm")]["evidence"]
    assert ev["item_id"] == "bad1.mp4" and ev["category"] == "blocklist:bad1.mp4" and ev["mode"] == "direct"
    assert ev["best_distance"] <= ev["median_distance"] <= 31 and ev["matched_s"] >= 6
    assert 0.0 <= ev["item_start_s"] <= 1.0 and ev["item_end_s"] >= 7.0  # the copy starts 0.4 s into the item
    assert all(not hits[n] for n in OK if n != "copy.webm"), hits
    assert all(rows[str(root / n)]["evidence"] is None for n in OK if n != "copy.webm")
    from pathlib import Path

    report = Path(output, "runs", "mod-1-moderation.html").read_text()  # reviewers see the evidence
    assert report.count('class="evidence"') == 1 and "known item bad1.mp4 (direct)" in report
    hashes = _by_uri(read_lance(output, "frame_pdq").to_pylist())  # every ok video, blocklist or not
    assert set(hashes) == {str(root / n) for n in OK} and summary.tables["frame_pdq"]["rows"] == 5
    long_h = hashes[str(root / "long.mp4")]
    assert [int(t) for t in long_h["times"]] == list(range(20)) and all(len(h) == 32 for h in long_h["hashes"])
    assert len(long_h["mirror"]) == len(long_h["quality"]) == 20


# ------------------------------------------------------------------ moderate (no decoding)
def _comparable(rows):
    return {r["video_id"]: (r["decision"], r["action"], r["coverage"], r["error"] is None,
                            [(f["category"], f["start_s"], f["end_s"], round(f["confidence"], 4)) for f in r["flags"]])
            for r in rows}


@pytest.mark.slow
def test_moderate_from_stored_features_equals_the_run(policy_run, setup, tmp_path):
    """Approximate without prompt features; exact (same decisions as the run) once the
    ``prompt_features`` table holds the clips' visual tokens (built here from the reference
    encoder pass: --store-prompt-features is another issue's flag)."""
    import datetime as dt

    from xclip_cli import main
    from moderation.recompute import moderate
    from schemas.features import PROMPT_FEATURES_TABLE, prompt_features_schema
    from schemas.output import from_columns

    output, _ = policy_run
    run_rows = read_lance(output, MODERATION_TABLE).to_pylist()
    approx = moderate(output, setup["policy"], run_id="mod-approx")
    assert approx.mode == "approximate" and len(approx.rows) == 6
    assert {r["score_mode"] for r in approx.rows if r["decision"] != "error"} == {"approximate"}

    segs = read_lance(output, schemas.SEGMENTS_TABLE).to_pylist()
    n_tok, dim = next(iter(setup["ref"].values()))["tokens"].shape[1:]
    cols = {"segment_id": [], "video_id": [], "visual_tokens": []}
    for s in segs:
        ref = setup["ref"][s["video_id"]]
        k = ref["starts"].index(s["start_s"])
        cols["segment_id"].append(s["segment_id"])
        cols["video_id"].append(s["video_id"])
        cols["visual_tokens"].append(ref["tokens"][k].astype(np.float16).reshape(-1))
    n = len(segs)
    schema = prompt_features_schema(n_tok, dim)
    import pyarrow as pa

    table = from_columns({**cols, "visual_tokens": pa.FixedSizeListArray.from_arrays(
        pa.array(np.concatenate(cols["visual_tokens"])), int(n_tok * dim)),
        "num_tokens": [int(n_tok)] * n, "model_id": [segs[0]["model_id"]] * n, "run_id": ["mod-1"] * n,
        "indexed_at": [dt.datetime.now(dt.timezone.utc)] * n}, schema, n)
    import lancedb

    lancedb.connect(f"{output}/lancedb").create_table(PROMPT_FEATURES_TABLE, table)

    review = tmp_path / "review.jsonl"
    assert main(["moderate", "--index", output, "--policy", setup["policy"], "--run-id", "mod-exact",
                 "--review-out", str(review), "--blocklist", str(setup["root"] / "bad")]) == 0
    exact = [r for r in read_lance(output, MODERATION_TABLE).to_pylist()]
    assert {r["run_id"] for r in exact} == {"mod-exact"} and len(exact) == 6  # upserted, not appended
    assert {r["score_mode"] for r in exact if r["decision"] != "error"} == {"exact"}
    assert _comparable(exact) == _comparable(run_rows)
    assert len(review.read_text().splitlines()) == len(OK) + 1  # + the broken upload


@pytest.mark.slow
def test_moderate_blocklist_on_an_index_built_without_one(ray_session, setup, tmp_path, capsys, monkeypatch):
    """Every run stores per-second PDQ (``frame_pdq``), with no --policy or --blocklist: a list item
    added later (a shared .vpdq) finds the old upload without decoding anything; an index whose
    ok videos lack hashes is refused with one line and exit 4, never a silent allow."""
    import lancedb

    from xclip_cli import main
    from jobs.runner import index_videos
    from xclip_core.video import decode as decode_mod

    root, output = setup["root"], str(tmp_path / "plain")
    summary = index_videos([str(root / "in")], output, setup["model"], run_id="plain-1", encoder={"batch_size": 4})
    assert summary.tables["frame_pdq"]["rows"] == len(OK)
    assert main(["hash", "--out", str(tmp_path / "list"), str(root / "bad" / "bad1.mp4")]) == 0
    capsys.readouterr()

    def no_decoding(*a, **k):
        raise AssertionError("moderate decoded a video")

    monkeypatch.setattr(decode_mod.ClipStream, "__iter__", no_decoding)
    monkeypatch.setattr("moderation.item_hash.iter_frames", no_decoding)
    review = tmp_path / "review.jsonl"
    assert main(["moderate", "--index", output, "--policy", setup["policy"], "--run-id", "later",
                 "--blocklist", str(tmp_path / "list"), "--review-out", str(review)]) == 0
    out = capsys.readouterr().out
    assert ": 1 videos matched" in out, out
    rows = _by_uri(read_lance(output, MODERATION_TABLE).to_pylist())
    copy = rows[str(root / "in" / "copy.webm")]
    assert copy["decision"] == "block" and [e["item_id"] for e in copy["evidence"]] == ["bad1"]
    queue = [json.loads(line) for line in review.read_text().splitlines()]
    (item,) = [q for q in queue if q["uri"].endswith("copy.webm")]
    (ev,) = item["evidence"]
    assert ev["mode"] == "direct" and ev["matched_s"] >= 6 and ev["best_distance"] <= ev["median_distance"] <= 31
    assert all(not q["evidence"] for q in queue if not q["uri"].endswith("copy.webm"))

    db = lancedb.connect(f"{output}/lancedb")
    db.open_table("frame_pdq").delete(f"uri = '{root / 'in' / 'other.mp4'}'")
    assert main(["moderate", "--index", output, "--policy", setup["policy"], "--blocklist",
                 str(tmp_path / "list")]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 5 ok videos have no stored frame hashes" in err and "--full" in err
    db.drop_table("frame_pdq")
    assert main(["moderate", "--index", output, "--policy", setup["policy"], "--blocklist",
                 str(tmp_path / "list")]) == 4
    assert "no stored frame hashes (frame_pdq table)" in capsys.readouterr().err


# ------------------------------------------------------------------ fails closed (issue 15 item 7)
def _decided(output: str) -> dict:
    """video_id -> decision in the moderation table ({} when it does not exist)."""
    import lancedb

    if MODERATION_TABLE not in set(lancedb.connect(f"{output}/lancedb").list_tables().tables):
        return {}
    return {r["video_id"]: r["decision"] for r in read_lance(output, MODERATION_TABLE).to_pylist()}


@pytest.mark.slow
def test_run_killed_mid_way_leaves_no_committed_video_undecided(ray_session, setup, tmp_path):
    """A --policy run dies before the writer's 10th Lance commit, the 3rd video's segments (tests/fault_points.py;
    chunks of one row; the 12th commit counting the frame_pdq and moderation merges between them, where
    the kill was when the writer committed by merge_insert too).
    Every videos row it committed has its decision (today: decisions were held until the end, so
    none); the next run, which keeps those videos as unchanged, leaves every input with a decision."""
    import ray

    from jobs.runner import index_videos
    from tests.fault_points import KILLED, run_killed

    out, inputs = str(tmp_path / "index"), str(setup["root"] / "in")
    writer = {"chunk_rows": 1, "lease_heartbeat_s": 0.5, "lease_stale_after_s": 2.0}
    (tmp_path / "job.toml").write_text("[writer]\n" + "".join(f"{k} = {v}\n" for k, v in writer.items()))
    proc = run_killed([("lance.dataset:LanceDataset.commit", 10)], [
        "run", "--input", inputs, "--output", out, "--model", setup["model"], "--batch-size", "4",
        "--policy", setup["policy"], "--config", str(tmp_path / "job.toml"),
        "--ray-address", ray.get_runtime_context().gcs_address])
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    committed = {v["video_id"] for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist() if v["status"] != "indexing"}
    assert 0 < len(committed) < len(OK) + 1  # killed mid-way: some videos committed, not all
    assert committed <= set(_decided(out)), "a committed video without its decision"
    time.sleep(2.5)  # the dead driver's lease goes stale (lease_stale_after_s = 2), as in test_jobs_faults
    summary = index_videos([inputs], out, setup["model"], run_id="mod-after-kill",
                           encoder={"batch_size": 4, "policy": setup["policy"]}, writer=writer)
    assert summary.num_unchanged >= 1  # the videos committed before the kill were kept as they are
    videos = read_lance(out, schemas.VIDEOS_TABLE).to_pylist()
    decided = _decided(out)
    assert len(videos) == len(OK) + 1 and {v["video_id"] for v in videos} == set(decided)
    assert decided[schemas.video_id(str(setup["root"] / "in" / "broken.mp4"))] == "error"


@pytest.mark.slow
def test_moderate_without_blocklist_keeps_the_matches_unless_dropped(policy_run, setup, tmp_path, capsys):
    """The run blocked copy.webm on the blocklist. ``moderate`` without --blocklist keeps that match
    (today: the decision falls back to the policy's, e.g. review); --drop-blocklist drops it."""
    import shutil

    from xclip_cli import main

    out = str(tmp_path / "index")
    shutil.copytree(policy_run[0], out)
    copy = str(setup["root"] / "in" / "copy.webm")

    def copy_row():
        return _by_uri(read_lance(out, MODERATION_TABLE).to_pylist())[copy]

    def blocklist_flags(row):
        return [f["category"] for f in row["flags"] if f["category"].startswith("blocklist:")]

    assert main(["moderate", "--index", out, "--policy", setup["policy"], "--run-id", "mod-keep"]) == 0
    assert "kept the earlier known-bad matches of 1 videos" in capsys.readouterr().out
    row = copy_row()
    assert (row["run_id"], row["decision"], blocklist_flags(row)) == ("mod-keep", "block", ["blocklist:bad1.mp4"])
    assert main(["moderate", "--index", out, "--policy", setup["policy"], "--run-id", "mod-drop",
                 "--drop-blocklist"]) == 0
    row = copy_row()
    assert row["run_id"] == "mod-drop" and blocklist_flags(row) == []


@pytest.mark.slow
def test_moderate_decides_the_same_in_several_partitions(policy_run, setup, tmp_path, monkeypatch):
    """moderate groups clips by video in hash partitions (moderation.stream): 3 partitions of about 2
    videos give the decisions, flags and score modes of one partition."""
    import shutil

    import moderation.stream
    from moderation.recompute import moderate

    out = str(tmp_path / "index")
    shutil.copytree(policy_run[0], out)
    one = moderate(out, setup["policy"], run_id="one-part")
    monkeypatch.setattr(moderation.stream, "VIDEOS_PER_PART", 2)
    three = moderate(out, setup["policy"], run_id="three-parts")
    parts = moderation.stream.part_of([r["video_id"] for r in one.rows], 3)  # crc32 of the ids: 1 to 3 used
    assert len(list((tmp_path / "index" / "runs" / "three-parts-stage" / "videos").iterdir())) == len(set(parts))

    def key(rows):
        return sorted((r["video_id"], r["decision"], r["score_mode"], r["coverage"],
                       [(f["category"], f["start_s"], f["end_s"], round(f["confidence"], 6)) for f in r["flags"]])
                      for r in rows)
    assert len(one.rows) == len(three.rows) == 6 and key(one.rows) == key(three.rows)
