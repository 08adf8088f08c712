"""``/runs``: the history of an index across runs (``runs/*.json``, the Parquet log).

Per run: kind (run, relabel, moderate), status, times, counts; failures grouped by a normalised
reason (URIs and paths replaced by ``<path>``, so one cause is one group) with example URIs, from
the ``videos`` Parquet log rows that run wrote; the URIs the run deleted (``runs/<run_id>-deleted.txt``,
written by the indexing job); the reports
that exist (``runs/<run_id>.html``, ``runs/<run_id>-moderation.html``).
"""
from __future__ import annotations

import collections
import re

from xclip_core import storage

REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.html")
MAX_EXAMPLES, MAX_DELETED = 3, 50
_PATH = re.compile(r"""(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s'"]*|(?:/[^\s'"/:,;()]+){2,}/?)""")


def normalise_reason(text: str | None, uri: str | None = None) -> str:
    """The first line of a failure reason with the URI and any path or URL replaced by ``<path>``."""
    line = (text or "no reason given").splitlines()[0] if (text or "").strip() else "no reason given"
    if uri:
        line = line.replace(uri, "<path>")
    return _PATH.sub("<path>", line)[:300]


def _files(uri: str, folder: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, base = storage.pyarrow_filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/{folder}", allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def read_text(uri: str, relpath: str) -> str | None:
    fs, base = storage.pyarrow_filesystem(uri)
    try:
        with fs.open_input_stream(f"{base.rstrip('/')}/{relpath}") as f:
            return f.read().decode("utf-8")
    except (FileNotFoundError, OSError):
        return None


def failures(uri: str) -> dict[str, list[dict]]:
    """run_id -> [{reason, count, examples}] from the ``videos`` Parquet log, most frequent first."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    fs, _ = storage.pyarrow_filesystem(uri)
    files = [p for p in _files(uri, "parquet/videos") if p.endswith(".parquet")]
    if not files:
        return {}
    t = ds.dataset(files, format="parquet", filesystem=fs).to_table(
        columns=["run_id", "uri", "status", "error"], filter=~pc.field("status").isin(["ok", "indexing"]))
    groups: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in t.to_pylist():
        reason = f"{r['status']}: {normalise_reason(r['error'], r['uri'])}"
        groups[r["run_id"]][reason].append(r["uri"])
    return {run: [{"reason": k, "count": len(v), "examples": sorted(v)[:MAX_EXAMPLES]}
                  for k, v in sorted(g.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
            for run, g in groups.items()}


def history(index) -> list[dict]:
    """Every manifest of the index, newest first, with failures, deletions and report names."""
    from xclip_search.index import read_manifests

    uri = index.uri
    names = {p.rsplit("/", 1)[-1] for p in _files(uri, "runs")}
    fails = failures(uri)
    out = []
    for m in reversed(read_manifests(uri)):
        run_id = str(m.get("run_id") or "")
        deleted = (read_text(uri, f"runs/{run_id}-deleted.txt") or "").splitlines() \
            if f"{run_id}-deleted.txt" in names else []
        reports = [n for n in (f"{run_id}.html", f"{run_id}-moderation.html") if n in names and REPORT_NAME.fullmatch(n)]
        out.append({"run_id": run_id, "kind": m.get("kind", "run"), "status": m.get("status"),
                    "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
                    "counts": m.get("counts") or {}, "error": m.get("error") or "",
                    "num_segments": m.get("num_segments"), "failures": fails.get(run_id, []),
                    "deleted": deleted[:MAX_DELETED], "num_deleted": len(deleted), "reports": reports})
    return out


def report_html(index, name: str) -> str | None:
    """A report page under ``runs/`` by file name (no path: anything else is None)."""
    if not REPORT_NAME.fullmatch(name or "") or ".." in name:
        return None
    return read_text(index.uri, f"runs/{name}")
