"""``runs/<run_id>-moderation.html``: a self-contained summary of one moderation run.

Sections: counts per decision; flagged videos per category; per category a histogram of the
videos' peak confidence (max clip probability, 10 bins of 0.1, text bars); the review queue's
top items (``moderation.store.review_queue``) with the ranges to look at and, when the
``thumbnails`` table exists (``schemas.features``), the thumbnail of the segment at the start
of the first range (inline base64 JPEG). Without that table the items are listed without images.
"""
from __future__ import annotations

import base64
import collections
import html

from moderation.decide import DECISIONS
from moderation.policy import Policy
from moderation.store import review_queue

TOP_ITEMS = 20
_BINS = 10


def _thumbnails(output: str, items: list[dict]) -> dict[str, bytes]:
    """video_id -> JPEG of the segment where its first range starts (empty without the table)."""
    import lancedb

    from schemas.features import THUMBNAILS_TABLE
    from schemas.output import SEGMENTS_TABLE
    from xclip_core import storage

    if not items:
        return {}
    db = lancedb.connect(storage.join(output, "lancedb"), storage_options=storage.lancedb_storage_options(output))
    names = set(db.list_tables().tables)
    if THUMBNAILS_TABLE not in names or SEGMENTS_TABLE not in names:
        return {}
    vids = ", ".join("'" + i["video_id"] + "'" for i in items)
    segs = db.open_table(SEGMENTS_TABLE).search().where(f"video_id IN ({vids})") \
        .select(["segment_id", "video_id", "start_s", "end_s"]).limit(None).to_arrow().to_pylist()
    thumbs = {r["segment_id"]: r["jpeg"] for r in db.open_table(THUMBNAILS_TABLE).search()
              .where(f"video_id IN ({vids})").select(["segment_id", "jpeg"]).limit(None).to_arrow().to_pylist()}
    out = {}
    for i in items:
        if not i["ranges"]:
            continue
        t = i["ranges"][0]["start_s"]
        for s in sorted((s for s in segs if s["video_id"] == i["video_id"]), key=lambda s: s["start_s"]):
            if s["start_s"] <= t < s["end_s"] and thumbs.get(s["segment_id"]):
                out[i["video_id"]] = thumbs[s["segment_id"]]
                break
    return out


def _table(head: list[str], rows: list[list], cls: str) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{th}</tr>{body}</table>'


def _evidence(e: dict) -> str:
    """One blocklist match, for reviewers (``schemas.moderation.EVIDENCE_TYPE``)."""
    return (f"known item {e['item_id']} ({e['mode']}): upload {e['start_s']:.1f}-{e['end_s']:.1f}s = item "
            f"{e['item_start_s']:.1f}-{e['item_end_s']:.1f}s, {e['matched_s']:g} s matched, Hamming best "
            f"{e['best_distance']} / median {e['median_distance']:g} of 256")


def render_report(rows: list[dict], policy: Policy, *, output: str, run_id: str) -> str:
    """The HTML text of the report for the decision rows of one run."""
    decisions = collections.Counter(r["decision"] for r in rows)
    flagged = collections.Counter(c for r in rows for c in {f["category"] for f in (r["flags"] or [])})
    parts = [f"<h1>Moderation report: run {html.escape(run_id)}</h1>",
             f"<p>policy {html.escape(policy.source)} ({html.escape(policy.policy_hash)}); "
             f"{len(rows)} videos</p>",
             "<h2>Decisions</h2>", _table(["decision", "videos"], [[d, decisions.get(d, 0)] for d in DECISIONS],
                                          "decisions"),
             "<h2>Flagged videos per category</h2>",
             _table(["category", "action", "min_confidence", "videos"],
                    [[c.name, c.action, c.min_confidence, flagged.get(c.name, 0)] for c in policy.categories],
                    "categories"),
             "<h2>Peak confidence per video</h2>"]
    for c in policy.categories:
        peaks = [r["peaks"][c.name] for r in rows if r.get("peaks") and c.name in r["peaks"]]
        counts = [0] * _BINS
        for p in peaks:
            counts[min(int(p * _BINS), _BINS - 1)] += 1
        top = max(counts) or 1
        lines = [f"{b / _BINS:.1f}-{(b + 1) / _BINS:.1f} {'#' * round(40 * n / top):<40} {n}"
                 for b, n in enumerate(counts)]
        parts.append(f'<h3>{html.escape(c.name)}</h3><pre class="histogram" data-category="{html.escape(c.name)}">'
                     + html.escape("\n".join(lines)) + "</pre>")
    items = review_queue(rows)[:TOP_ITEMS]
    thumbs = _thumbnails(output, items)
    parts.append(f"<h2>Review queue (top {len(items)})</h2><ol class=\"queue\">")
    for i in items:
        ranges = "; ".join(f"{f['category']} {f['start_s']:.1f}-{f['end_s']:.1f}s ({f['confidence']:.2f})"
                           for f in i["ranges"]) or (i.get("error") or "")
        img = (f'<img alt="thumbnail" src="data:image/jpeg;base64,{base64.b64encode(thumbs[i["video_id"]]).decode()}">'
               if i["video_id"] in thumbs else "")
        ev = "".join(f'<br><span class="evidence">{html.escape(_evidence(e))}</span>' for e in i.get("evidence") or [])
        parts.append(f'<li data-decision="{i["decision"]}">{img}<b>{html.escape(i["decision"])}</b> '
                     f'{html.escape(i["uri"])}: {html.escape(ranges)}{ev}</li>')
    parts.append("</ol>")
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}img{height:60px}"
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Moderation {html.escape(run_id)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
