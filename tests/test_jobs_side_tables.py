"""Side tables are cleaned with their video (xclip_store.writer): a run that does not write thumbnails or prompt
features still removes those rows for every video it rewrites, fails or repairs; real LanceDB, local and S3."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

import schemas
from jobs.config import WriterConfig
from xclip_store.writer import Writer
from schemas.features import PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE, prompt_features_schema, thumbnails_schema
from schemas.output import from_columns
from tests.jobs_helpers import open_lance_table, read_lance
from tests.test_xclip_store_writer import P, _segments, _videos

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
SIDE = {THUMBNAILS_TABLE: thumbnails_schema(), PROMPT_FEATURES_TABLE: prompt_features_schema(2, P)}


def _side_rows(vid, n, run_id):
    ids = [schemas.segment_id(vid, i) for i in range(n)]
    thumbs = from_columns({"segment_id": ids, "video_id": [vid] * n, "jpeg": [b"jpeg"] * n, "width": [8] * n,
                           "height": [8] * n, "run_id": [run_id] * n, "indexed_at": [NOW] * n},
                          SIDE[THUMBNAILS_TABLE], n)
    tok = np.ones((n, 2 * P), np.float16)
    feats = from_columns({"segment_id": ids, "video_id": [vid] * n,
                          "visual_tokens": pa.FixedSizeListArray.from_arrays(pa.array(tok.reshape(-1)), 2 * P),
                          "num_tokens": [2] * n, "model_id": ["m"] * n, "run_id": [run_id] * n,
                          "indexed_at": [NOW] * n}, SIDE[PROMPT_FEATURES_TABLE], n)
    return {THUMBNAILS_TABLE: thumbs, PROMPT_FEATURES_TABLE: feats}


def _side_videos(out):
    return {name: sorted(set(read_lance(out, name).column("video_id").to_pylist())) for name in SIDE}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_stale_side_rows_do_not_survive_a_run_that_does_not_write_them(where, tmp_path, request):
    out = str(tmp_path / "out") if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/idx"
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P, side_tables=SIDE)
    vids = ["v1", "v2", "v3", "v4"]
    for v in vids:
        for name, t in _side_rows(v, 2, "r1").items():
            w.add(name, t)
        w.add("segments", _segments(v, 2, "r1"))
    w.add("videos", _videos(vids, "r1", ok=True))
    w.close()
    assert _side_videos(out) == {name: vids for name in SIDE}

    # a later run without thumbnails or prompt features: v1 reindexed, v2 now failed
    w2 = Writer(WriterConfig(output=out), run_id="r2", dim=P)
    w2.add("segments", _segments("v1", 3, "r2"))
    w2.add("videos", _videos(["v1"], "r2", ok=True))
    w2.add("videos", _videos(["v2"], "r2", ok=False))
    w2.close()
    assert _side_videos(out) == {name: ["v3", "v4"] for name in SIDE}  # no tokens of v1's old clips

    tbl = open_lance_table(out, schemas.VIDEOS_TABLE)  # v3 duplicated: the repair removes its side rows too
    tbl.add(tbl.search().where("video_id = 'v3'").limit(None).to_arrow())
    assert Writer(WriterConfig(output=out), run_id="r3", dim=P).repair_duplicates() == 1
    assert _side_videos(out) == {name: ["v4"] for name in SIDE}
