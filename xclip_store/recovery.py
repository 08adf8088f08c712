"""``restore(uri, run_id)``: check every table out to the versions a run's manifest recorded.

A run manifest (``runs/<run_id>.json``) records, under ``tables``, the LanceDB version of every
table it wrote (``videos``, ``segments``, side tables, ``moderation`` and its ``frame_hashes``);
a relabel manifest records them under ``tables.after``. ``restore`` takes the output lease
(command ``restore``) and, for each recorded table:

- reads it at the recorded version (``restore`` in LanceDB: a new version with that content;
  no data is copied);
- when the table cannot be opened at all (a truncated or missing newest manifest), first moves
  the manifests of the versions after the recorded one aside, to
  ``<table>.lance/_versions_damaged/`` (kept for inspection), then opens it;
- reads every row's key at the restored version, so a deleted data file is found now, not by
  the next search.

All tables are restored together, to one run: restoring one table alone leaves the others
pointing at rows it no longer has. Tables the manifest does not record (created later) are left
as they are and listed in the result. The Parquet log is append-only and is not rewound: the
later runs' files stay (their manifests list them). ``restore`` writes ``runs/<restore id>.json``
(``"kind": "restore"``) with the versions before and after.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid

from xclip_store.errors import DamagedTableError, OutputError
from xclip_store.manifests import list_manifests, recorded_versions
from xclip_store.output import manifest_name, open_output
from xclip_store.retry import PROGRAMMING_ERRORS, short_error

log = logging.getLogger(__name__)

class RestoreError(OutputError):
    """The output cannot be restored to that run (no such manifest, versions cleaned up)."""


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    restore_id: str
    run_id: str
    tables: dict            # name -> {"before": version or None, "after": version}
    untouched: list         # tables the run's manifest does not record
    manifest_uri: str

    def format(self) -> str:
        done = ", ".join(f"{n} v{t['after']}" for n, t in sorted(self.tables.items()))
        extra = f"; not recorded by that run, left as they are: {', '.join(self.untouched)}" if self.untouched else ""
        return f"restore {self.restore_id}: tables back to run {self.run_id}: {done}{extra}\nmanifest: " \
               f"{self.manifest_uri}"


def _quarantine_after(out, name: str, version: int) -> list[int]:
    """Move the manifests of versions after ``version`` to ``_versions_damaged/``; returns them."""
    moved = [v for v in out.versions_on_disk(name) if v > version]
    table = out._table_path(name)
    if moved and not out.uri.startswith("s3://"):
        out.fs.create_dir(f"{table}/_versions_damaged", recursive=True)
    for v in moved:
        out.fs.move(f"{table}/_versions/{manifest_name(v)}", f"{table}/_versions_damaged/{manifest_name(v)}")
    return moved


def _restore_table(out, name: str, version: int, run_id: str) -> dict:
    on_disk = out.versions_on_disk(name)
    if version not in on_disk:
        raise RestoreError(f"{out.uri}: table {name!r} no longer has version {version} of run {run_id} (versions "
                           f"older than writer.keep_versions_days are cleaned up; kept: "
                           f"{on_disk[0] if on_disk else 'none'}..{on_disk[-1] if on_disk else ''}): restore a "
                           f"later run, or reindex")
    before = None
    try:
        tbl = out.db.open_table(name)
        before = int(tbl.version)
    except PROGRAMMING_ERRORS:
        raise
    except Exception as e:
        log.warning("table %s cannot be opened (%s): setting aside its versions after %d", name,
                    short_error(e), version)
        moved = _quarantine_after(out, name, version)
        log.warning("table %s: manifests of versions %s moved to _versions_damaged/ (%s)", name, moved,
                    manifest_name(version))
        try:
            tbl = out.db.open_table(name)
        except Exception as e2:
            raise DamagedTableError(f"{out.uri}: table {name!r} cannot be opened at version {version} of run "
                                    f"{run_id} either ({short_error(e2, 160)}): reindex into a new output") from None
    if int(tbl.version) != version:
        out.commit(f"restore {name} to version {version}", lambda: tbl.restore(version), table=tbl)
    key = "video_id" if "video_id" in tbl.schema.names else tbl.schema.names[0]
    try:
        tbl.search().select([key]).limit(None).to_arrow()  # every data file of that version is there
    except Exception as e:
        raise DamagedTableError(f"{out.uri}: table {name!r} at version {version} of run {run_id} is damaged too "
                                f"({short_error(e, 160)}): restore an earlier run, or reindex") from None
    return {"before": before, "after": int(tbl.version)}


def restore(uri: str, run_id: str, *, restore_id: str | None = None) -> RestoreResult:
    """Restore every table of the output at ``uri`` to the versions recorded by run ``run_id``
    (see module doc). Raises ``RestoreError``/``DamagedTableError``/``LeaseError`` with one line."""
    with open_output(uri, mode="w", command="restore", run_id=restore_id or new_restore_id()) as out:
        text = out.read_text(f"runs/{run_id}.json")
        if text is None:
            known = [m.get("run_id") for m in list_manifests(out) if recorded_versions(m)]
            raise RestoreError(f"{uri}: no manifest runs/{run_id}.json; runs with recorded table versions: "
                               f"{', '.join(map(str, known[-5:])) or 'none'}")
        try:
            manifest = json.loads(text)
        except ValueError as e:
            raise RestoreError(f"{uri}: runs/{run_id}.json is not valid JSON ({e}): pick another run") from None
        versions = recorded_versions(manifest)
        if not versions:
            raise RestoreError(f"{uri}: runs/{run_id}.json records no table versions (status "
                               f"{manifest.get('status')!r}): pick a finished run")
        started = dt.datetime.now(dt.timezone.utc)
        done = {name: _restore_table(out, name, v, run_id) for name, v in sorted(versions.items())}
        untouched = sorted(out.table_names() - set(done))
        rid = out.run_id
        record = {"kind": "restore", "run_id": rid, "status": "finished", "restored_run": run_id,
                  "started_at": started.isoformat(), "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                  "output": uri, "tables": done, "untouched": untouched}
        manifest_uri = out.write_text(f"runs/{rid}.json", json.dumps(record, indent=2, sort_keys=True))
    return RestoreResult(restore_id=rid, run_id=run_id, tables=done, untouched=untouched,
                         manifest_uri=manifest_uri)


def new_restore_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-restore-" + uuid.uuid4().hex[:6]
