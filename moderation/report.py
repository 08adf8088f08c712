"""``runs/<run_id>-moderation.html``: a self-contained summary of one moderation run.

Sections: counts per decision; flagged videos per category; per category a histogram of the
videos' peak confidence (max clip probability, 10 bins of 0.1, text bars); the review queue's
top items (``moderation.store.review_queue``) with the ranges to look at (each a link to the
moment: ``xclip_search.links``) and, when the
``thumbnails`` table exists (``schemas.features``), the thumbnail of the segment at the start
of the first range (inline base64 JPEG). Without that table the items are listed without images.
Cumulative: the counts, queue and errors (named, with their reason) cover every current video of the
index after review (``moderation.reviews``), not only the videos this run decided; they come from a
``moderation.summary.Summary``, which holds bounded state (the errors listed are the first 1,000
by URI when there are more; the heading gives their number).
"""
from __future__ import annotations

import base64
import html

from moderation.decide import DECISIONS
from moderation.policy import Policy
from moderation.summary import BINS, Summary


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


def render_report(summary: Summary, *, output: str, run_id: str) -> str:
    """The HTML text of the report from ``summary`` (``moderation.summary``): its current rows are every
    current video's decision (cumulative, after review: ``moderation.reviews``), its run rows this
    run's (histograms of peak confidence)."""
    from xclip_search.links import moment_url

    e = html.escape
    s, policy = summary, summary.policy
    effective = s.effective
    parts = [f"<h1>Moderation report: run {e(run_id)}</h1>",
             f"<p>policy {e(policy.source)} ({e(policy.policy_hash)}); {s.videos} videos in the index "
             f"(every run, not only this one); this run decided {s.run_videos}</p>",
             "<h2>Decisions (after review)</h2>",
             _table(["decision", "videos"], [[d, effective.get(d, 0)] for d in DECISIONS]
                    + ([["escalate", effective["escalate"]]] if effective.get("escalate") else []), "decisions"),
             "<h2>The model's decisions</h2>",
             _table(["decision", "videos", "reviewed"],
                    [[d, s.model.get(d, 0), s.reviewed.get(d, 0)] for d in DECISIONS], "model"),
             "<h2>Flagged videos per category</h2>",
             _table(["category", "action", "min_confidence", "videos"],
                    [[c.name, c.action, c.min_confidence, s.flagged.get(c.name, 0)] for c in policy.categories],
                    "categories"),
             "<h2>Peak confidence per video (this run)</h2>"]
    for c in policy.categories:
        counts = s.histograms[c.name]
        top = max(counts) or 1
        lines = [f"{b / BINS:.1f}-{(b + 1) / BINS:.1f} {'#' * round(40 * n / top):<40} {n}"
                 for b, n in enumerate(counts)]
        parts.append(f'<h3>{e(c.name)}</h3><pre class="histogram" data-category="{e(c.name)}">'
                     + e("\n".join(lines)) + "</pre>")
    shown = f", the first {len(s.error_rows)} by URI" if s.errors > len(s.error_rows) else ""
    parts.append(f"<h2>Errors ({s.errors}{shown}): not scored</h2>"
                 + _table(["uri", "reason"], [[uri, reason] for uri, _, reason in s.error_rows], "errors"))
    items = s.top
    thumbs = _thumbnails(output, items)
    parts.append(f"<h2>Review queue (top {len(items)})</h2><ol class=\"queue\">")
    for i in items:
        links = []
        for f in i["ranges"]:
            text = e(f"{f['category']} {f['start_s']:.1f}-{f['end_s']:.1f}s ({f['confidence']:.2f})")
            url = moment_url(i["uri"], f["start_s"], f["end_s"])
            links.append(f'<a class="moment" href="{e(url)}">{text}</a>' if url else text)
        img = (f'<img alt="thumbnail" src="data:image/jpeg;base64,{base64.b64encode(thumbs[i["video_id"]]).decode()}">'
               if i["video_id"] in thumbs else "")
        ev = "".join(f'<br><span class="evidence">{e(_evidence(x))}</span>' for x in i.get("evidence") or [])
        reason = e(i["error"]) if i.get("error") and not links else ""
        parts.append(f'<li data-decision="{e(i["decision"])}">{img}<b>{e(i["decision"])}</b> '
                     f'{e(i["uri"])}: {"; ".join(links)}{reason}{ev}</li>')
    parts.append("</ol>")
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}img{height:60px}"
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Moderation {e(run_id)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def index_summary(output: str, run_rows: list[dict], policy: Policy) -> Summary:
    """The summary of every current video of ``output`` (read whole: ``current_decisions``) and of
    ``run_rows``; for a ``--policy`` run, whose collector holds its rows anyway (``moderation.job``)."""
    from moderation.reviews import current_decisions

    s = Summary(policy)
    s.add_current(current_decisions(output))
    s.add_run(run_rows)
    return s


def write_outputs(output: str, run_id: str, summary: Summary, *, review_out: str | None = None) -> dict:
    """After a run's decisions are written: the cumulative report ``runs/<run_id>-moderation.html``
    and, with ``review_out``, the review queue of every current video (effective decisions), both
    from ``summary``. Returns ``{"report", "review_items"?, "review_out"?, "counts"}`` (counts:
    effective decisions)."""
    from moderation.store import write_lines, write_text
    from xclip_core import storage
    from xclip_store import held

    page = render_report(summary, output=output, run_id=run_id)
    owner = held(output)  # under `run` / `moderate`: the leased output writes it (atomic, lease checked)
    relpath = f"runs/{run_id}-moderation.html"
    out = {"report": owner.write_text(relpath, page) if owner is not None else write_text(storage.join(output, relpath), page),
           "counts": dict(summary.effective)}
    if review_out:
        out["review_items"] = write_lines(review_out, summary.queue_lines())
        out["review_out"] = review_out
    return out


def moderate_manifest(result, policy: Policy, started, done: dict) -> str:
    """``runs/<run_id>.json`` of ``xclip-index moderate`` (``"kind": "moderate"``; no ``model_source``,
    so ``xclip_search`` never takes it for an indexing run)."""
    import datetime as dt
    import json

    return json.dumps({
        "kind": "moderate", "run_id": result.run_id, "status": "finished", "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(), "policy": policy.source,
        "policy_hash": policy.policy_hash, "mode": result.mode, "counts": result.counts,
        "counts_after_review": done["counts"], "num_videos": result.num_videos, "blocklist_matched": result.matched,
        "blocklist_kept": result.kept,
        "tables": {"moderation": result.table}, "report": done["report"],
        "review_out": done.get("review_out"), "review_items": done.get("review_items")}, indent=2)
