"""Run manifests (``runs/*.json``) as the store reads them: recorded table versions, the restore hint."""
from __future__ import annotations

import json

RESTORE_COMMAND = "xclip-index restore --index {uri} --run {run_id}"


def recorded_versions(manifest: dict) -> dict[str, int]:
    """Table -> version recorded by a run (``tables``) or relabel (``tables.after``) manifest."""
    tables = manifest.get("tables") or {}
    if isinstance(tables.get("after"), dict):
        tables = tables["after"]
    out = {}
    for name, entry in tables.items():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("version"), int):
            out[name] = entry["version"]
        for sub, inner in entry.items():  # moderation: {"version", ..., "frame_hashes": {"version", ...}}
            if isinstance(inner, dict) and isinstance(inner.get("version"), int):
                out[sub] = inner["version"]
    return out


def read_manifests(uri: str) -> list[dict]:
    """Every ``runs/*.json`` under ``uri`` (runs, relabels, restores), oldest first; an ``OSError``
    when ``runs/`` cannot be listed."""
    import pyarrow.fs as pafs

    from xclip_core import storage

    fs, base = storage.pyarrow_filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/runs", allow_not_found=True))
    out = []
    for info in infos:
        if info.type == pafs.FileType.File and info.path.endswith(".json"):
            with fs.open_input_stream(info.path) as f:
                out.append(json.loads(f.read().decode("utf-8")))
    return sorted(out, key=lambda m: (m.get("finished_at") or "", m.get("run_id") or ""))


def list_manifests(out) -> list[dict]:
    """Every readable runs/*.json of the opened output ``out``, oldest first."""
    import pyarrow.fs as pafs

    try:
        infos = out.fs.get_file_info(pafs.FileSelector(out.path("runs"), allow_not_found=True))
    except Exception:
        return []
    found = []
    for info in infos:
        if info.type == pafs.FileType.File and info.path.endswith(".json"):
            try:
                with out.fs.open_input_stream(info.path) as f:
                    found.append(json.loads(f.read().decode("utf-8")))
            except Exception:  # a damaged manifest is no candidate
                continue
    return sorted(found, key=lambda m: (m.get("finished_at") or "", m.get("run_id") or ""))


def restore_hint(out, table: str | None = None, bad_version: int | None = None) -> str:
    """What to run: the restore command with the latest finished run whose versions are recorded
    (and, with ``table``/``bad_version``, that recorded an older version of that table)."""
    good = [m for m in list_manifests(out) if m.get("status") == "finished" and recorded_versions(m)
            and m.get("kind", "run") in ("run", "relabel")
            and (bad_version is None or recorded_versions(m).get(table, -1) < bad_version)]
    if not good and bad_version is not None:
        return (f"no finished run recorded an earlier version of {table!r} to restore: move {out.uri} aside and "
                f"reindex; see README 'Recovering an index'")
    run_id = good[-1]["run_id"] if good else "RUN_ID"
    where = "" if good else " (a finished run from runs/*.json)"
    return (f"restore the index to the last good run: {RESTORE_COMMAND.format(uri=out.uri, run_id=run_id)}"
            f"{where}; see README 'Recovering an index'")
