"""The ``--policy`` hook of the indexing job (``jobs.runner``): load the policy before Ray
starts, hand its class prompts to the encoder, collect decisions, write them at the end.

Writes (next to the job's own outputs): the ``moderation`` table (``moderation.store``),
``runs/<run_id>-moderation.html`` (``moderation.report``) and, with ``--review-out``, the
review queue; both cover every current video after review (``moderation.reviews``).
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
                blocklist = load_blocklist(cfg.encoder.blocklist, dcfg)
            except BlocklistError as e:
                raise ConfigError(str(e)) from None
            log.info("blocklist %s: %d items", cfg.encoder.blocklist, len(blocklist))
        return cls(cfg, policy, model_id=model_id, run_id=run_id, blocklist=blocklist)

    @property
    def encoder_kwargs(self) -> dict:
        """What the encoder actors need: the policy's class prompts; frame hashing under a blocklist."""
        return {"policy_prompts": self.policy.class_prompts, "hash_frames": self.blocklist is not None}

    def add(self, batch, video_tables) -> None:
        """An encoded batch and the videos tables the assembler finished with it."""
        self.collector.add_clips(batch)
        for t in video_tables:
            self.collector.add_videos(t)

    def add_videos(self, videos) -> None:
        self.collector.add_videos(videos)

    def close(self, writer) -> dict:
        """Write the table, the report and the review queue; returns the manifest's table entry."""
        from moderation.report import write_outputs
        from moderation.store import write_decisions, write_frame_hashes

        out = write_decisions(self.cfg.writer.output, self.run_id, self.collector.table())
        if self.blocklist is not None:
            out["frame_hashes"] = write_frame_hashes(self.cfg.writer.output, self.run_id,
                                                     self.collector.hashes_table())
        done = write_outputs(self.cfg.writer.output, self.run_id, self.collector.rows, self.policy,
                             review_out=self.cfg.writer.review_out)  # cumulative report and queue
        done.pop("counts")
        out.update(done)
        return out
