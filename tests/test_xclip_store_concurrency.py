"""Real runs against real commands on one output: while a run holds the output (stopped at an exact
point: its 1st chunk commit, ``Writer._flush``), ``relabel``, ``build-index``, ``moderate`` and
``restore`` are refused with one line and exit 7, and the run's rows are left exactly as the run
wrote them (before: a relabel there reverted the run's rows, both exiting 0; a build-index made
the run fail with a commit-conflict traceback)."""
from __future__ import annotations

import json
import os

import pytest

from xclip_cli import main
from jobs.runner import index_videos
from tests.conftest import own_ray
from tests.fault_points import at_call
from tests.jobs_helpers import read_lance
from tests.search_helpers import LABELS, LABELS_2, label_file, make_videos
from xclip_store.writer import Writer

pytestmark = pytest.mark.slow

OPTIONS = {"decoder": {"window_s": 1.0}, "encoder": {"batch_size": 4, "top_k": 3}}


@pytest.fixture(scope="module")
def ray_session():
    with own_ray():
        yield


@pytest.fixture(scope="module")
def corpus(ray_session, tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    tmp = tmp_path_factory.mktemp("concurrency")
    model = str(write_random_checkpoint(tmp / "tiny-xclip", preset="tiny", num_frames=4))
    make_videos(tmp / "videos")
    return {"tmp": tmp, "model": model, "videos": str(tmp / "videos"),
            "l1": label_file(tmp, LABELS, "one.txt"), "l2": label_file(tmp, LABELS_2, "two.txt")}


def test_commands_during_a_run_are_refused_and_change_nothing(corpus, capsys):
    out = str(corpus["tmp"] / "index")
    index_videos([corpus["videos"]], out, corpus["model"], labels=corpus["l1"], run_id="run-1", **OPTIONS)
    answers = {}

    def others_try_now(writer, name):  # inside run-2, at its first commit: it holds the lease
        capsys.readouterr()
        for cmd in (["relabel", "--index", out, "--labels", corpus["l2"]],
                    ["build-index", "--index", out],
                    ["moderate", "--index", out, "--policy", "example"]):
            code = main(cmd)
            answers[cmd[0]] = (code, capsys.readouterr().err.strip())

    with at_call(Writer, "_flush", 1, others_try_now) as hook:
        summary = index_videos([corpus["videos"]], out, corpus["model"], labels=corpus["l1"], run_id="run-2",
                               writer={"full": True, "chunk_rows": 1}, **OPTIONS)
    assert hook.fired and summary.counts["ok"] == 4
    for cmd, (code, err) in answers.items():
        assert code == 7, (cmd, code, err)
        assert err.startswith("xclip-index: error: ") and "\n" not in err and "Traceback" not in err, err
        assert "in use by run run-2 (xclip-index run" in err, err
    # the run's rows stand as the run wrote them: none reverted, none relabelled
    videos = [v for v in read_lance(out, "videos").to_pylist() if v["status"] == "ok"]
    segments = read_lance(out, "segments").to_pylist()
    assert {v["run_id"] for v in videos} == {"run-2"} and {s["run_id"] for s in segments} == {"run-2"}
    label_sets = {v["label_set"] for v in videos} | {s["label_set"] for s in segments}
    assert len(label_sets) == 1 and label_sets.pop().startswith("one")
    assert sorted(os.listdir(os.path.join(out, "runs"))) == ["run-1.html", "run-1.json", "run-2.html",
                                                             "run-2.json"]  # no relabel/moderate manifest
    assert not os.path.exists(os.path.join(out, "_lock.json"))  # released at the end
    # once the run is done, the same commands go through; restore brings back run-1's rows
    assert main(["relabel", "--index", out, "--labels", corpus["l2"]]) == 0
    assert main(["build-index", "--index", out]) == 0
    from xclip_store import restore

    restore(out, "run-1")
    assert {v["run_id"] for v in read_lance(out, "videos").to_pylist() if v["status"] == "ok"} == {"run-1"}
    with open(os.path.join(out, "runs", "run-1.json")) as f:
        assert json.load(f)["status"] == "finished"


def test_a_relabel_whose_lease_is_taken_over_commits_nothing_more(corpus, capsys):
    """Barrier: right after relabel's 1st commit (segments), another command takes the lease over
    (as after a stall past stale_after_s): the relabel's next commit (videos) is refused, exit 7."""
    from tests.test_xclip_store_output import _take_over
    from xclip_store import label_commit

    out = str(corpus["tmp"] / "index-2")
    index_videos([corpus["videos"]], out, corpus["model"], labels=corpus["l1"], run_id="run-1", **OPTIONS)
    videos_before = read_lance(out, "videos").to_pylist()
    thieves = []
    capsys.readouterr()
    with at_call(label_commit, "commit_columns", 1, lambda *a, **k: thieves.append(_take_over(out)), when="after"):
        code = main(["relabel", "--index", out, "--labels", corpus["l2"]])
    err = capsys.readouterr().err.strip()
    # the next commit after the takeover (the segments' label rows in the Parquet log) is refused
    assert code == 7 and "refused to log the relabelled segments" in err and "\n" not in err, (code, err)
    assert read_lance(out, "videos").to_pylist() == videos_before
    relabels = [json.loads(open(os.path.join(out, "runs", f)).read()) for f in os.listdir(os.path.join(out, "runs"))
                if f.endswith(".json") and f != "run-1.json"]
    assert [m["status"] for m in relabels] == ["running"]  # announced, never finished (the next write repairs it)
    thieves[0].release()
