"""xclip_search: open_index, the query builder, similar, the CLI (JSON, HTML) on a real job's index."""
from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from xclip_cli import main
from jobs.runner import index_videos
from tests.conftest import own_ray
from tests.jobs_helpers import open_lance_table, read_lance
from tests.search_helpers import LABELS, brute_force, label_file, make_videos, text_features

pytestmark = pytest.mark.slow

QUERY = "a dog jumping into a lake"


@pytest.fixture(scope="module")
def ray_session():
    with own_ray():
        yield


@pytest.fixture(scope="module")
def built(ray_session, tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    tmp = tmp_path_factory.mktemp("search")
    model = str(write_random_checkpoint(tmp / "tiny-xclip", preset="tiny", num_frames=4))
    videos = make_videos(tmp / "videos")
    out = str(tmp / "index")
    index_videos([str(tmp / "videos")], out, model, labels=label_file(tmp, LABELS), run_id="run-1",
                 decoder={"window_s": 1.0}, encoder={"batch_size": 4, "top_k": 3, "store_prompt_features": True})
    return {"out": out, "model": model, "videos": videos}


@pytest.fixture(scope="module")
def idx(built):
    import xclip_search

    return xclip_search.open_index(built["out"])


@pytest.fixture(scope="module")
def segments(built):
    return read_lance(built["out"], "segments").to_pylist()


def test_index_has_coverage_thumbnails_and_prompt_features(built, segments):
    videos = {v["uri"]: v for v in read_lance(built["out"], "videos").to_pylist()}
    for uri in built["videos"]:
        assert videos[uri]["status"] == "ok" and 0.5 < videos[uri]["coverage"] <= 1.0
    assert [v["coverage"] for v in videos.values() if v["status"] != "ok"] == [0.0]
    thumbs = read_lance(built["out"], "thumbnails")
    pf = read_lance(built["out"], "prompt_features")
    ids = sorted(s["segment_id"] for s in segments)
    assert sorted(thumbs.column("segment_id").to_pylist()) == ids == sorted(pf.column("segment_id").to_pylist())
    from PIL import Image

    img = Image.open(io.BytesIO(thumbs.column("jpeg")[0].as_py()))
    assert img.format == "JPEG" and img.size == (32, 32)  # the tiny model's centre crop (<= 160 px)


def test_search_returns_the_brute_force_order(built, idx, segments):
    hits = idx.search(QUERY).limit(5).to_list()
    q = text_features(built["model"], [QUERY])[0]
    emb = np.asarray([s["embedding"] for s in segments], np.float32)
    want = [segments[i]["segment_id"] for i in brute_force(emb, q, 5)]
    assert [h["segment_id"] for h in hits] == want
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    by_id = {s["segment_id"]: s for s in segments}
    for h in hits:
        s = by_id[h["segment_id"]]
        assert abs(h["score"] - float(np.dot(s["embedding"], q))) < 1e-4
        assert (h["video_id"], h["uri"], h["segment_index"], h["start_s"], h["end_s"], h["labels"]) == \
            (s["video_id"], s["uri"], s["segment_index"], s["start_s"], s["end_s"], s["labels"])
    df = idx.search(QUERY).limit(3).to_pandas()
    assert list(df["segment_id"]) == want[:3] and idx.search(QUERY).limit(2).to_arrow().num_rows == 2


def test_search_by_vector_and_bf16_queries(built, idx, segments, capsys):
    import xclip_search

    q = text_features(built["model"], [QUERY])[0]
    by_text = [h["segment_id"] for h in idx.search(QUERY).limit(5).to_list()]
    assert [h["segment_id"] for h in idx.search(3.0 * q).limit(5).to_list()] == by_text  # normalised
    for bad in (np.zeros(q.shape), np.ones(3), [float("nan")] * q.shape[0]):
        with pytest.raises(ValueError, match="vector of"):
            idx.search(bad)
    fast = xclip_search.open_index(built["out"], precision="bf16")
    v16 = fast.encode_text([QUERY], query=True)[0]
    assert not np.array_equal(v16, q) and float(v16 @ q) > 0.999  # bf16: close, not equal
    assert np.array_equal(fast.encode_text([QUERY])[0], idx.encode_text([QUERY])[0])  # label sets stay fp32
    emb = np.asarray([s["embedding"] for s in segments], np.float32)
    hits = fast.search(QUERY).limit(5).to_list()
    assert [h["segment_id"] for h in hits] == [segments[i]["segment_id"] for i in brute_force(emb, v16, 5)]
    assert main(["search", "--index", built["out"], QUERY, "--precision", "bf16", "--limit", "5", "--json"]) == 0
    assert [h["segment_id"] for h in json.loads(capsys.readouterr().out)] == [h["segment_id"] for h in hits]
    with pytest.raises(ValueError, match="precision"):
        xclip_search.open_index(built["out"], precision="int4")
    from pathlib import Path

    from xclip_search.index import native_bf16

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native = any(f" {flag}" in cpuinfo for flag in ("avx512_bf16", "amx_bf16"))
    assert xclip_search.open_index(built["out"], precision="auto").precision == ("bf16" if native else "fp32")
    assert idx.precision == "fp32"  # the default: exact
    assert native_bf16("cuda:0")


def test_where_labels_and_per_video(idx, segments):
    hits = idx.search(QUERY).where("segment_index = 0").limit(50).to_list()
    assert len(hits) == sum(s["segment_index"] == 0 for s in segments) == 4
    label = segments[0]["labels"][0]
    hits = idx.search(QUERY).labels_any([label]).limit(100).to_list()
    assert len(hits) == sum(label in s["labels"] for s in segments) > 0
    assert all(label in h["labels"] for h in hits)
    per = idx.search(QUERY).per_video().limit(10).to_list()
    assert len(per) == 4 and len({h["video_id"] for h in per}) == 4
    best = {}
    for h in idx.search(QUERY).limit(100).to_list():
        best.setdefault(h["video_id"], h["segment_id"])
    assert {h["segment_id"] for h in per} == set(best.values())


def test_filter_values_are_escaped(idx, segments):
    tricky = "it's\"; DROP"  # a label of this index's label set
    hits = idx.search(QUERY).labels_any([tricky]).limit(100).to_list()
    assert len(hits) == sum(tricky in s["labels"] for s in segments)
    assert idx.search(QUERY).labels_any(["x') OR true OR ('x"]).limit(100).to_list() == []
    assert idx.search(QUERY).labels_any(["x'] ) OR 1=1 --"]).limit(100).to_list() == []
    assert "''" in idx.search(QUERY).labels_any([tricky]).filter_sql()
    with pytest.raises(KeyError, match="not in"):
        idx.similar("nope' OR '1'='1")
    assert len(idx.search(QUERY).limit(100).to_list()) == len(segments)  # nothing was changed


def _label_tokens(row) -> set[str]:
    """The words of a row's labels, lower case (split like LanceDB's simple tokenizer)."""
    return set(re.findall(r"[^\W_]+", " ".join(row["labels"] or []).lower()))


def test_labels_match_is_full_text_over_the_labels(idx, segments, capsys, built):
    import xclip_search

    word = segments[0]["labels"][0].split()[-1]  # e.g. "bike" of "riding a bike"
    hits = idx.search(QUERY).labels_match(word.upper()).limit(100).to_list()
    want = sorted(s["segment_id"] for s in segments if word.lower() in _label_tokens(s))
    assert want and sorted(h["segment_id"] for h in hits) == want
    two = ["playing", "guitar"]  # every word must be in the row's labels, in any of them
    hits = idx.search(QUERY).labels_match(" ".join(two)).limit(100).to_list()
    assert sorted(h["segment_id"] for h in hits) == sorted(s["segment_id"] for s in segments
                                                         if set(two) <= _label_tokens(s))
    hits = idx.search(QUERY).labels_match("IT'S").limit(100).to_list()  # a quote is escaped
    assert sorted(h["segment_id"] for h in hits) == sorted(s["segment_id"] for s in segments
                                                         if {"it", "s"} <= _label_tokens(s))
    assert idx.search(QUERY).labels_match("x') OR true OR ('x").limit(100).to_list() == []
    with pytest.raises(ValueError, match="at least one word"):
        idx.search(QUERY).labels_match("'; --")
    # an index whose manifests predate label lists: contains_tokens over label_text, same rows
    old = xclip_search.open_index(built["out"])
    old.manifests = [{**m, "label_set": {k: v for k, v in m["label_set"].items() if k != "labels"}}
                     for m in old.manifests]
    for text in (word.upper(), "playing guitar", "IT'S", "nothing-like-this"):
        q = old.search(QUERY).labels_match(text)
        assert "contains_tokens" in q.filter_sql() and "contains_tokens" not in \
            idx.search(QUERY).labels_match(text).filter_sql()
        assert sorted(h["segment_id"] for h in q.limit(100).to_list()) == \
            sorted(h["segment_id"] for h in idx.search(QUERY).labels_match(text).limit(100).to_list())
    assert main(["search", "--index", built["out"], QUERY, "--label-match", word, "--json", "--limit", "100"]) == 0
    assert sorted(h["segment_id"] for h in json.loads(capsys.readouterr().out)) == want


def test_similar_puts_the_item_first(idx, segments):
    vid = segments[0]["video_id"]
    hits = idx.similar(vid).limit(10).to_list()
    assert hits[0]["video_id"] == vid and abs(hits[0]["score"] - 1.0) < 1e-5 and len(hits) == 4
    seg = segments[3]
    hits = idx.similar((seg["video_id"], seg["segment_index"])).limit(3).to_list()
    assert hits[0]["segment_id"] == seg["segment_id"] and len(hits) == 3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_rerank_uses_the_prompt_generator(built, idx, segments):
    import torch
    import torch.nn.functional as F

    from xclip_core.model import XCLIP

    hits = idx.search(QUERY).rerank(6).limit(6).to_list()
    assert len(hits) == 6 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    model = XCLIP.from_pretrained(built["model"])
    text = torch.from_numpy(text_features(built["model"], [QUERY], normalize=False))
    pf = {r["segment_id"]: r for r in read_lance(built["out"], "prompt_features").to_pylist()}
    by_id = {s["segment_id"]: s for s in segments}
    for h in hits:
        tok = torch.tensor(pf[h["segment_id"]]["visual_tokens"], dtype=torch.float32).view(1, -1, text.shape[1])
        with torch.no_grad():
            prompted = model.prompt_text(text, tok)[0, 0]
        want = F.cosine_similarity(torch.tensor(by_id[h["segment_id"]]["embedding"]), prompted, dim=0).item()
        assert abs(h["score"] - want) < 1e-4


def test_cli_json_and_html(built, capsys, tmp_path):
    assert main(["search", "--index", built["out"], QUERY, "--limit", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all({"video_id", "uri", "start_s", "end_s", "score"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    page = tmp_path / "hits.html"
    assert main(["search", "--index", built["out"], QUERY, "--limit", "4", "--per-video", "--html", str(page)]) == 0

    class Imgs(HTMLParser):
        def __init__(self):
            super().__init__()
            self.srcs = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Imgs()
    parser.feed(page.read_text(encoding="utf-8"))
    assert len(parser.srcs) == 4
    from PIL import Image

    for src in parser.srcs:
        assert src.startswith("data:image/jpeg;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.format == "JPEG"


def test_open_index_errors_say_the_fix(tmp_path, built, capsys):
    import xclip_search

    with pytest.raises(xclip_search.IndexError_, match=r"no runs/\*\.json .*xclip-index --output"):
        xclip_search.open_index(str(tmp_path / "empty"))
    assert main(["search", "--index", str(tmp_path / "empty"), QUERY]) == 4  # a missing index: exit 4 everywhere
    assert "no runs/*.json" in capsys.readouterr().err


def test_build_index_cli(built, capsys):
    assert main(["build-index", "--index", built["out"]]) == 0
    report = json.loads(capsys.readouterr().out)
    seg = report["segments"]
    assert {"segment_id", "video_id", "labels", "label_text"} <= set(seg["indexes"])
    assert "embedding" not in seg["indexes"]  # fewer rows than PQ training needs (256)
    assert {"video_id", "status", "labels"} <= set(report["videos"]["indexes"])
    # LanceDB's own full-text search runs on that index: the rows whose labels hold the word
    segments = read_lance(built["out"], "segments").to_pylist()
    word = segments[0]["labels"][0].split()[-1].lower()
    fts = open_lance_table(built["out"], "segments").search(word, query_type="fts").limit(1000).to_arrow()
    assert sorted(fts.column("segment_id").to_pylist()) == \
        sorted(s["segment_id"] for s in segments if word in _label_tokens(s))
