"""The ``--policy`` hook of the indexing job (``jobs.runner``): load the policy before Ray
starts, hand its class prompts to the encoder, collect decisions, commit them with their videos.

Fails closed: the writer calls ``commit_chunk`` with every chunk of ``videos`` rows just before it
commits them (``Writer.before_videos_commit``), and the chunk's decisions are committed then,
first (the per-second PDQ of its videos too: ``jobs.runner``). A crash leaves no committed videos
row without its decision, so no video
the next run keeps as unchanged is left unmoderated (a decision whose videos row did not commit is
redone with its video).

Writes (next to the job's own outputs): the ``moderation`` table (``moderation.store``; one
Parquet file per chunk), ``runs/<run_id>-moderation.html`` (``moderation.report``) and, with
``--review-out``, the review queue (at the end); both cover every current video after review
(``moderation.reviews``).
"""
from __future__ import annotations

import logging

from jobs.config import ConfigError, JobConfig
from moderation.collector import DecisionCollector
from moderation.policy import Policy, PolicyError, load_policy

log = logging.getLogger(__name__)


class ModerationRun:
    def __init__(self, cfg: JobConfig, policy: Policy, *, model_id: str, run_id: str, blocklist=None):
        self.cfg = cfg
        self.policy = policy
        self.run_id = run_id
        self.blocklist = blocklist
        self.collector = DecisionCollector(policy, model_id=model_id, run_id=run_id, score_mode="exact",
                                           blocklist=blocklist)
        self._parts = 0
        self._written: dict = {}

    @classmethod
    def start(cls, cfg: JobConfig, *, model_id: str, run_id: str, dcfg) -> "ModerationRun | None":
        """None without a policy; ``ConfigError`` for an unusable policy or blocklist (before
        anything runs). A blocklist of videos is decoded and hashed here with ``dcfg``."""
        if not cfg.encoder.policy:
            return None
        try:
            policy = load_policy(cfg.encoder.policy)
        except PolicyError as e:
            raise ConfigError(f"--policy: {e}") from None
        log.info("moderation policy %s (%s): %d categories, %d neutral prompts", cfg.encoder.policy,
                 policy.policy_hash[:19], len(policy.categories), len(policy.neutral))
        blocklist = None
        if cfg.encoder.blocklist:
            from moderation.blocklist import BlocklistError, load_blocklist

            try:
                blocklist = load_blocklist(cfg.encoder.blocklist)
            except BlocklistError as e:
                raise ConfigError(str(e)) from None
        return cls(cfg, policy, model_id=model_id, run_id=run_id, blocklist=blocklist)

    @property
    def encoder_kwargs(self) -> dict:
        """What the encoder actors need: the policy's class prompts."""
        return {"policy_prompts": self.policy.class_prompts}

    def add(self, batch, video_tables) -> None:
        """An encoded batch and the videos tables the assembler finished with it."""
        self.collector.add_clips(batch)
        for t in video_tables:
            self.collector.add_videos(t)

    def add_videos(self, videos) -> None:
        self.collector.add_videos(videos)

    def commit_chunk(self, videos=None) -> None:
        """Commit the decisions of the ``videos`` rows about to be committed (None: every pending
        one). Called by the writer before each videos commit."""
        from moderation.store import write_decisions

        ids, decisions = self.collector.pending(None if videos is None else videos.column("video_id").to_pylist())
        if not ids:
            return
        out = write_decisions(self.cfg.writer.output, self.run_id, decisions, part=self._parts)
        self._parts += 1
        files = self._written.get("parquet", []) + ([out["parquet"]] if out["parquet"] else [])
        self._written = {**out, "parquet": files}
        self.collector.committed(ids)  # only now: a retried commit writes them again (an upsert)

    def close(self, writer) -> dict:
        """Commit what is left, then the report and the review queue (cumulative: every current video
        after review); returns the manifest's table entry."""
        from moderation.report import index_summary, write_outputs
        from moderation.store import open_table

        self.commit_chunk()  # nothing is left when every videos row went through the writer
        out = dict(self._written) or {"version": int(open_table(self.cfg.writer.output).version),
                                      "rows": int(open_table(self.cfg.writer.output).count_rows()), "parquet": []}
        summary = index_summary(self.cfg.writer.output, self.collector.rows, self.policy)
        done = write_outputs(self.cfg.writer.output, self.run_id, summary,
                             review_out=self.cfg.writer.review_out)  # cumulative report and queue
        done.pop("counts")
        out.update(done)
        return out
