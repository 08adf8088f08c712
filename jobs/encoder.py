"""Stage 3: X-CLIP on decoded clips, as a Ray actor (one model per actor).

``Encoder(cfg)`` loads the model, the tokenizer, the label set and the
preprocessing config once, and encodes the label prompts once
(``model.encode_text``). Each call takes a decoded batch
(``schemas.stream.decoded_schema()``) and returns it as
``schemas.stream.encoded_schema(P, K)``:

    embedding  L2-normalised clip embedding (``encode_video().video_embeds``)
    probs      softmax over ``video_logits(video_embeds, prompt_text(text, tokens))``
    encode_s   model seconds attributed to the row (batch time / clips in batch)
    visual_tokens  with ``store_prompt_features``: ``encode_video().visual_tokens`` [N, P] as
               float16 (the probs are then computed from these rounded tokens, so a relabel
               from stored features reproduces them: ``xclip_search.relabel``)
    policy_probs  only with ``policy_prompts`` (a moderation policy's classes): exact softmax
               over them, scored by a second ``ClipScorer`` on the same visual tokens

Status rows pass through untouched. Frames arrive as uint8 ``[T, S, S, 3]``;
scaling and normalisation (``xclip_core.preprocess``) run here, on the
actor's device. A clip whose frame bytes do not match its shape, and every clip of a
batch that ran out of memory, carry the error (``encode failed: ...``) and null vectors;
any other error of the model is a bug in us or a dependency and fails the run.

``inspect_model(cfg)`` runs on the driver before Ray starts: it loads
everything once so an unusable model or label set stops the job early with a
clear message, and returns what the other stages need to know.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobs import gpu_decode
from jobs.config import DEFAULT_LABELS, EncoderConfig
from jobs.finite import NONFINITE, nonfinite_rows
from jobs.gpu_defaults import resolve_encoder
from schemas.output import vectors
from schemas.stream import FRAMES, FRAMES_SHAPE, KIND_CLIP, POLICY_PROBS, VISUAL_TOKENS, encoded_schema

log = logging.getLogger(__name__)


def _out_of_memory() -> tuple[type[BaseException], ...]:
    """The one failure of a model call recorded per clip (torch is imported in the actors only)."""
    import torch

    return (MemoryError, torch.OutOfMemoryError)

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class ModelError(RuntimeError):
    """The model, its preprocessing config, tokenizer or label set cannot be used."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    source: str
    model_id: str           # "<name>@<sha256[:12]>"
    weights_sha256: str
    dim: int                # projection dim P
    num_frames: int         # frames per clip T
    crop_size: int          # S (square crop)
    shortest_edge: int
    label_set_name: str
    label_set_sha256: str
    labels: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...] = ()   # prompt texts per label (LabelSet.class_prompts)
    num_tokens: int = 0     # visual tokens per clip N (the vision tower's patches)

    @property
    def label_set_id(self) -> str:
        return f"{self.label_set_name}@{self.label_set_sha256[:12]}"


def _model_name(source: str) -> str:
    name = source.rstrip("/").rsplit("/", 1)[-1]
    return name or source


def inspect_model(cfg: EncoderConfig) -> ModelInfo:
    """Validate model, preprocessing config, tokenizer and labels once (driver side)."""
    from xclip_core.labels import load_labels
    from xclip_core.loading import resolve_checkpoint, weights_sha256
    from xclip_core.model import inspect_checkpoint
    from xclip_core.preprocess import PreprocessConfig
    from xclip_core.tokenizer import CLIPTokenizer

    try:
        local = Path(resolve_checkpoint(cfg.model))
        config = inspect_checkpoint(local)  # strict key/shape check from the headers; weights load in the actors
        pre = PreprocessConfig.from_pretrained(local)
        CLIPTokenizer.from_pretrained(local)
        sha = weights_sha256(local)
    except Exception as e:  # any reason the model is unusable is reported the same way
        raise ModelError(f"--model {cfg.model}: cannot load the model ({type(e).__name__}: {e})") from None
    try:
        labels = load_labels(cfg.labels or DEFAULT_LABELS)
    except Exception as e:
        raise ModelError(f"--labels {cfg.labels}: cannot load the label set ({type(e).__name__}: {e})") from None
    h, w = pre.crop_size
    if h != w:
        raise ModelError(f"--model {cfg.model}: non-square crop {pre.crop_size} is not supported")
    vision = config.vision_config
    if vision.image_size != h:
        raise ModelError(f"--model {cfg.model}: preprocessor crop {h} != model image_size {vision.image_size}")
    from jobs.finite import probe_model

    bad = probe_model(local, config, labels.class_prompts(cfg.prompt_template))
    if bad:
        raise ModelError(f"--model {cfg.model}: the model outputs NaN or infinity ({bad}) on a probe clip: "
                         "corrupt weights or a broken conversion? Check the checkpoint")
    return ModelInfo(source=cfg.model, model_id=f"{_model_name(cfg.model)}@{sha[:12]}", weights_sha256=sha,
                     dim=int(config.projection_dim), num_frames=int(vision.num_frames), crop_size=int(h),
                     shortest_edge=int(pre.shortest_edge), label_set_name=labels.name,
                     label_set_sha256=labels.sha256, labels=tuple(labels.labels),
                     prompts=tuple(tuple(p) for p in labels.class_prompts(cfg.prompt_template)),
                     num_tokens=int(vision.num_patches))


class Encoder:
    """Ray Data callable class (``map_batches(Encoder, compute=ActorPoolStrategy(...))``).
    Rows of ``kind="nvdec"`` are decoded here first (``jobs.gpu_decode``); ``nvdec_read``
    replaces the NVDEC frame reader (tests set it to a CPU decoder)."""

    nvdec_read = None

    def __init__(self, cfg: EncoderConfig, *, labels: tuple[str, ...] | None = None,
                 num_threads: int | None = None, prompts: tuple[tuple[str, ...], ...] | None = None,
                 policy_prompts: list[list[str]] | None = None):
        """``labels`` / ``prompts``: the label names and their prompt texts as the driver loaded
        them (a label file on the driver's disk need not exist on worker nodes); default:
        ``load_labels(cfg.labels)``. Without ``prompts``, each label is ``cfg.prompt_template``'d.
        ``policy_prompts``: a moderation policy's classes (``moderation.policy``)."""
        import torch

        from xclip_core.labels import load_labels
        from xclip_core.loading import resolve_checkpoint
        from xclip_core.model import XCLIP
        from xclip_core.preprocess import PreprocessConfig
        from xclip_core.scoring import ClipScorer, class_text_features
        from xclip_core.tokenizer import CLIPTokenizer

        t0 = time.perf_counter()
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if cfg.device == "auto" else cfg.device))
        self.cfg = cfg = resolve_encoder(cfg, cuda=self.device.type == "cuda")  # "auto" settings by device
        self._host = None  # reused (pinned on CUDA) host buffer for CPU-decoded frames
        self.dtype = getattr(torch, _DTYPES[cfg.precision])
        local = resolve_checkpoint(cfg.model)
        self.model = XCLIP.from_pretrained(local, device=self.device, dtype=self.dtype)
        self.pre = PreprocessConfig.from_pretrained(local)
        if labels is None:
            label_set = load_labels(cfg.labels or DEFAULT_LABELS)
            labels, prompts = label_set.labels, label_set.class_prompts(cfg.prompt_template)
        labels = tuple(labels)
        if not prompts:
            prompts = [[cfg.prompt_template.format(label)] for label in labels]
        tok = CLIPTokenizer.from_pretrained(local)
        self.text = class_text_features(self.model, tok, prompts, device=self.device)  # [K, P]
        self.scorer = ClipScorer(self.model, self.text)
        self.policy_scorer = (ClipScorer(self.model, class_text_features(self.model, tok, policy_prompts,
                                                                         device=self.device))
                              if policy_prompts else None)
        self.num_policy_classes = len(policy_prompts) if policy_prompts else 0
        # torch.compile measured 1.68x transformers vs 1.48x eager (H200, bf16, batch 128; bench/RESULTS.md).
        # Shapes are static: short batches are padded to batch_size, so it compiles once per actor.
        self._step = torch.compile(self._forward, dynamic=False) if cfg.compile else self._forward
        self.dim = int(self.model.config.projection_dim)
        self.num_labels = len(labels)
        self.num_tokens = int(self.model.config.vision_config.num_patches) if cfg.store_prompt_features else 0
        self.schema = encoded_schema(self.dim, self.num_labels, num_tokens=self.num_tokens,
                                     num_policy_classes=self.num_policy_classes)
        self.load_s = time.perf_counter() - t0
        log.info("encoder ready on %s (%s) in %.1fs", self.device, cfg.precision, self.load_s)

    def _forward(self, x):
        """uint8 clips [B,T,S,S,3] on the device -> (L2-normalised embeddings [B,P], label probs [B,K],
        visual tokens [B,N,P] (float16 when stored, then also what the probs are computed from),
        policy probs [B,C] or None)."""
        import torch
        import torch.nn.functional as F

        from xclip_core.preprocess import preprocess

        px = preprocess(x, self.pre, dtype=self.dtype)  # [B,T,3,S,S]
        feats = self.model.encode_video(px)
        tokens = feats.visual_tokens
        if self.num_tokens:
            tokens = tokens.to(torch.float16)
        scored = tokens.to(feats.visual_tokens.dtype)
        probs = self.scorer.probs(feats.video_embeds, scored)
        policy = (self.policy_scorer.probs(feats.video_embeds, scored)
                  if self.policy_scorer is not None else None)
        return F.normalize(feats.video_embeds.float(), dim=-1), probs, tokens, policy

    def _to_device(self, frames: list) -> "torch.Tensor":
        """uint8 clips -> [B,T,S,S,3] on the device. numpy clips (CPU-decoded) go through
        one reused host buffer, pinned on CUDA, with a non-blocking copy; tensors
        (NVDEC-decoded, already on the GPU) are used as they are."""
        import torch

        host = [i for i, f in enumerate(frames) if isinstance(f, np.ndarray)]
        if host:
            shape = (len(host), *frames[host[0]].shape)
            if self._host is None or self._host.shape[0] < shape[0] or self._host.shape[1:] != shape[1:]:
                buf = torch.empty((max(shape[0], self.cfg.batch_size), *shape[1:]), dtype=torch.uint8)
                self._host = buf.pin_memory() if self.device.type == "cuda" else buf
            buf = self._host[:shape[0]]
            np.stack([frames[i] for i in host], out=buf.numpy())
            on_device = buf.to(self.device, non_blocking=True)
            if len(host) == len(frames):
                return on_device
        x = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, device=self.device)
        gpu = [i for i, f in enumerate(frames) if not isinstance(f, np.ndarray)]
        x[gpu] = torch.stack([frames[i] for i in gpu]).to(self.device)
        if host:
            x[host] = on_device
        return x

    def _encode(self, frames: list):
        """-> (embeddings [n,P], probs [n,K], stored tokens [n,N*P] or None, policy probs [n,C] or None)"""
        import torch

        n = len(frames)
        x = self._to_device(frames)  # [B,T,S,S,3] uint8
        if self.cfg.compile and n < self.cfg.batch_size:  # one static shape for the compiled step
            x = torch.cat([x, x.new_zeros((self.cfg.batch_size - n, *x.shape[1:]))])
        with torch.inference_mode():
            emb, probs, tokens, policy = self._step(x)
        tokens = tokens[:n].cpu().numpy().reshape(n, -1) if self.num_tokens else None
        policy = policy[:n].cpu().numpy() if policy is not None else None
        return emb[:n].cpu().numpy(), probs[:n].cpu().numpy(), tokens, policy

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch, gpu_frames = gpu_decode.expand_nvdec_rows(batch, device=self.device, read=self.nvdec_read)
        n = batch.num_rows
        kinds = batch.column("kind").to_pylist()
        clip_rows = [i for i, k in enumerate(kinds) if k == KIND_CLIP]
        emb = np.zeros((n, self.dim), np.float32)
        probs = np.zeros((n, self.num_labels), np.float32)
        policy = np.zeros((n, self.num_policy_classes), np.float32)
        valid = np.zeros(n, bool)
        tokens = np.zeros((n, self.num_tokens * self.dim), np.float16) if self.num_tokens else None
        errors = batch.column("error").to_pylist()
        encode_s = [None] * n
        if clip_rows:
            t0 = time.perf_counter()
            frames_col = batch.column(FRAMES)
            shapes = batch.column(FRAMES_SHAPE)
            frames, rows_ok = [], []
            for i in clip_rows:  # a clip whose bytes do not match its shape fails alone
                try:
                    frames.append(gpu_frames[i] if gpu_frames[i] is not None else
                                  np.frombuffer(frames_col[i].as_buffer(), np.uint8).reshape(shapes[i].as_py()))
                    rows_ok.append(i)
                except ValueError as exc:
                    errors[i] = f"encode failed: {type(exc).__name__}: {exc}"[:500]
            step = self.cfg.batch_size  # NVDEC rows can expand a batch past it
            try:
                for a in range(0, len(rows_ok), step):
                    rows = rows_ok[a:a + step]
                    e, p, t, pp = self._encode(frames[a:a + step])
                    emb[rows], probs[rows], valid[rows] = e, p, True
                    if tokens is not None:
                        tokens[rows] = t
                    if pp is not None:
                        policy[rows] = pp
            except _out_of_memory() as exc:  # recorded per clip; the writer fails those videos
                # anything else from the model is a bug in us or a dependency and fails the run
                msg = f"encode failed: {type(exc).__name__}: {exc}"[:500]
                log.warning("%s (%d clips)", msg, len(rows_ok))
                for i in rows_ok:
                    errors[i] = msg
            bad = nonfinite_rows(emb, probs) & valid  # e.g. a half-precision overflow on this input
            for i in np.flatnonzero(bad):
                errors[i], valid[i] = f"encode failed: {NONFINITE}", False
            per_clip = (time.perf_counter() - t0) / len(clip_rows)
            for i in clip_rows:
                encode_s[i] = per_clip
        cols = {}
        for field in self.schema:
            if field.name == "embedding":
                cols[field.name] = vectors(emb, self.dim, valid)
            elif field.name == "probs":
                cols[field.name] = vectors(probs, self.num_labels, valid)
            elif field.name == VISUAL_TOKENS:
                cols[field.name] = pa.FixedSizeListArray.from_arrays(
                    pa.array(tokens.reshape(-1)), self.num_tokens * self.dim, mask=pa.array(~valid))
            elif field.name == POLICY_PROBS:
                cols[field.name] = vectors(policy, self.num_policy_classes, valid)
            elif field.name == "encode_s":
                cols[field.name] = pa.array(encode_s, pa.float64())
            elif field.name == "error":
                cols[field.name] = pa.array(errors, pa.string())
            else:
                cols[field.name] = batch.column(field.name)
        return pa.Table.from_pydict(cols, schema=self.schema)
