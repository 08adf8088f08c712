"""Resume after a crash: runs that died leave ``runs/<run_id>.json`` as ``running``.

Unit of progress: a committed chunk (``xclip_store.writer``). A run killed at any
point (SIGKILL included) leaves its committed chunks; the next run sees those
videos as unchanged (``jobs.incremental``) and processes only the rest,
replacing any ``indexing`` placeholder rows. The next run, once it holds the
output lease (so no other run is alive on this output), marks every other
``running`` manifest ``interrupted``.
"""
from __future__ import annotations

import logging

from schemas import RunManifest

log = logging.getLogger(__name__)


def mark_interrupted(writer, own_run_id: str) -> list[str]:
    """Set ``status = 'interrupted'`` on the output's other ``running`` manifests; returns their run ids.
    Call only while holding the output lease."""
    from pyarrow import fs as pafs

    runs_dir = f"{writer.base.rstrip('/')}/runs"
    try:
        infos = writer.fs.get_file_info(pafs.FileSelector(runs_dir, allow_not_found=True))
    except FileNotFoundError:
        return []
    marked = []
    for info in infos:
        if not info.path.endswith(".json") or info.type != pafs.FileType.File:
            continue
        with writer.fs.open_input_stream(info.path) as f:
            text = f.read().decode("utf-8")
        try:
            m = RunManifest.from_json(text)
        except ValueError:
            continue
        if m.status != "running" or m.run_id == own_run_id:
            continue
        import dataclasses

        m = dataclasses.replace(m, status="interrupted",
                                error="the run ended without finishing (killed?); a later run resumed it")
        writer.write_text(f"runs/{info.path.rsplit('/', 1)[-1]}", m.to_json())
        marked.append(m.run_id)
        log.warning("run %s had died without finishing: marked interrupted", m.run_id)
    return marked
