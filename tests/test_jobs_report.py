"""The HTML run report, opened with html.parser."""
from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import schemas
from jobs.report import RunReport
from schemas import RunManifest


class Tables(HTMLParser):
    """Rows (lists of cell texts) of every <table id=...>, plus every tag seen."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.tags, self._table, self._row, self._cell = {}, [], None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "br" and self._cell is not None:
            self._cell += "\n"

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.tables[self._table].append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def report_counts(text: str) -> dict:
    return {k: int(v) for k, v in Tables(text).tables["counts"][1:]}


def test_report_sections_and_counts():
    videos = schemas.to_table([
        {"video_id": f"v{i}", "uri": f"s3://b/<v{i}>.mp4", "status": st, "error": err, "num_segments": 0,
         "model_id": "m", "label_set": "l", "run_id": "r"}
        for i, (st, err) in enumerate([("ok", None), ("failed", "not found"), ("failed", "not found"),
                                       ("failed", "not found"), ("failed", "not found"), ("skipped", "too long")])],
        schemas.videos_schema(4))
    r = RunReport()
    r.add_videos(videos)
    r.tick(1.0, 3, 7)
    r.tick(2.5, 6, 12)
    m = RunManifest(run_id="r<1>", package_version="0", started_at="a", finished_at="b", inputs=["s3://b/"],
                    output="s3://o", num_inputs=8, num_unchanged=2,
                    counts={"ok": 1, "failed": 4, "skipped": 1, "unchanged": 2, "deleted": 3}, num_segments=12,
                    model_source="m", model_id="m", weights_sha256="w", label_set={}, decode_config={}, config={},
                    stage_seconds={"decode": 1.5, "total": 3.0}, clips_per_s=4.8, tables={}, parquet_files=[])
    text = r.html(m)
    page = Tables(text)
    assert report_counts(text) == m.counts
    reasons = page.tables["reasons"][1:]
    assert reasons[0][:2] == ["failed: not found", "4"] and reasons[1][:2] == ["skipped: too long", "1"]
    assert reasons[0][2].split("\n") == ["s3://b/<v1>.mp4", "s3://b/<v2>.mp4", "s3://b/<v3>.mp4"]  # 3 examples
    assert [row[1] for row in page.tables["throughput"][1:]] == ["0", "3", "6"]
    assert dict(page.tables["stages"][1:]) == {"decode": "1.50", "total": "3.00"}
    assert "<v1>" not in text and "Run r&lt;1&gt;" in text  # escaped
    assert any(tag == "svg" for tag, _ in page.tags)
    assert not [a for _, a in page.tags if any(k in a for k in ("src", "href"))]  # self-contained
    failed = dataclasses.replace(m, status="failed", error="pipeline error: boom")
    assert "pipeline error: boom" in r.html(failed)
