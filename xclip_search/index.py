"""``open_index(uri)``: an index written by ``xclip-index run``, with its model loaded once (CPU).

The model is the one named by the latest finished run manifest (``<uri>/runs/*.json``:
``model_source``; its weights must still hash to the manifest's ``weights_sha256``).
"""
from __future__ import annotations


import numpy as np

from schemas import SEGMENTS_TABLE, VIDEOS_TABLE, segment_id


PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str) -> bool:
    """True on CUDA, and on x86 CPUs with bf16 matmul instructions (AVX512-BF16 or AMX; Linux's
    /proc/cpuinfo flags): where a bf16 text tower is fast. Elsewhere bf16 may be emulated."""
    if str(device).startswith("cuda"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class IndexError_(RuntimeError):
    """The index (or its model) cannot be opened; the message says the fix."""


def read_manifests(uri: str) -> list[dict]:
    """Every ``runs/*.json`` under ``uri`` (runs and relabels), oldest first (``xclip_store.manifests``)."""
    from xclip_store.manifests import read_manifests as read

    try:
        return read(uri)
    except OSError as e:
        raise IndexError_(f"{uri}: cannot list runs/ ({type(e).__name__}: {e})") from None


def latest_finished(manifests: list[dict], uri: str) -> dict:
    done = [m for m in manifests if m.get("status") == "finished" and m.get("model_source")]
    if not manifests:
        raise IndexError_(f"no runs/*.json under {uri}: is this an xclip-index --output? "
                          f"(run `xclip-index run --output {uri} ...` first)")
    if not done:
        raise IndexError_(f"{uri}: no finished run in runs/*.json (a run is still going or failed): "
                          "rerun `xclip-index run` on this output")
    return done[-1]


def load_model(manifest: dict, *, model: str | None = None, device: str = "cpu"):
    """(XCLIP, CLIPTokenizer) of the index's model; checks the weights are the indexed ones."""
    from xclip_core.loading import resolve_checkpoint, weights_sha256
    from xclip_core.model import XCLIP
    from xclip_core.tokenizer import CLIPTokenizer

    source = model or manifest["model_source"]
    try:
        local = resolve_checkpoint(source)
        sha = weights_sha256(local)
    except Exception as e:
        raise IndexError_(f"cannot load the index's model {source!r} ({type(e).__name__}: {e}); "
                          "pass model= / --model with a copy of the checkpoint") from None
    if manifest.get("weights_sha256") and sha != manifest["weights_sha256"]:
        raise IndexError_(f"model {source!r} has weights {sha[:12]}, but the index was built with "
                          f"{manifest['weights_sha256'][:12]} ({manifest.get('model_id')}): pass the original "
                          "checkpoint with model= / --model")
    return XCLIP.from_pretrained(local, device=device).eval(), CLIPTokenizer.from_pretrained(local)


class Index:
    """An opened index: its LanceDB tables, run manifests and model."""

    def __init__(self, uri: str, *, model: str | None = None, device: str = "cpu", precision: str = "fp32"):
        from xclip_store import Output

        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")

        self.uri = uri
        self.manifests = read_manifests(uri)
        self.manifest = latest_finished(self.manifests, uri)
        self.store = Output(uri, mode="r")  # a table folder without versions is absent; a damaged one is named
        self.db = self.store.db
        self.table_names = self.store.table_names()
        self._tables, self._vocab = {}, False  # opened tables; label_vocabulary() once computed
        for name in (SEGMENTS_TABLE, VIDEOS_TABLE):
            if name not in self.table_names:
                raise IndexError_(f"{uri}: no {name!r} table under lancedb/: is this an xclip-index --output?")
        from xclip_search.labelstate import reader_tables

        self._tables.update(reader_tables(self.db, uri))  # one label set on both, even mid-relabel
        self.model, self.tokenizer = load_model(self.manifest, model=model, device=device)
        self.device = device
        self.precision = precision if precision != "auto" else ("bf16" if native_bf16(device) else "fp32")
        self._query_tower = None  # bf16 copy of the text tower, for queries (precision="bf16")

    def label_vocabulary(self) -> dict[str, set[str]] | None:
        """Every label of every label set whose run or relabel wrote here (from ``runs/*.json``), with
        its words (``xclip_search.query.label_words``); None when a manifest predates label lists in
        manifests (schema "3"). Computed once per opened index."""
        if self._vocab is False:
            from xclip_search.query import label_words

            vocab = {}
            for m in self.manifests:
                ls = m.get("label_set")
                if not ls:  # the run stopped before it had a label set: it labelled nothing
                    continue
                if "labels" not in ls:
                    vocab = None
                    break
                vocab.update({x: set(label_words(x)) for x in ls["labels"]})
            self._vocab = vocab
        return self._vocab

    def table(self, name: str):
        """The LanceDB table ``name``, opened once (a handle reads the version it opened: reopen
        the index to see a later run's rows)."""
        if name not in self.table_names:
            raise IndexError_(f"{self.uri}: no {name!r} table" + (
                ": reindex with --store-prompt-features" if name == "prompt_features" else ""))
        if name not in self._tables:
            from xclip_store import held

            owner = held(self.uri)  # inside a leased command (relabel): every commit checks the lease
            self._tables[name] = owner.table(name) if owner is not None else self.store.open_table(name)
        return self._tables[name]

    def encode_text(self, texts: list[str], *, normalize: bool = True, query: bool = False) -> np.ndarray:
        """Text features [len(texts), P] (``model.encode_text``), L2-normalised unless told otherwise.
        ``query``: a search query, encoded in the index's ``precision`` (label sets and reranking
        always use the fp32 model)."""
        import torch
        import torch.nn.functional as F

        enc = self.tokenizer(list(texts))
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        with torch.inference_mode():
            if query and self.precision == "bf16":
                tower = self._bf16_tower()
                feats = tower.text_projection(tower.text_model(ids, mask))
            else:
                feats = self.model.encode_text(ids, mask)
        feats = feats.float()
        return (F.normalize(feats, dim=-1) if normalize else feats).cpu().numpy()

    def _bf16_tower(self):
        import copy

        import torch

        if self._query_tower is None:
            tower = torch.nn.Module()
            tower.text_model = copy.deepcopy(self.model.text_model)
            tower.text_projection = copy.deepcopy(self.model.text_projection)
            self._query_tower = tower.to(torch.bfloat16).eval()
        return self._query_tower

    # ------------------------------------------------------------------ queries
    def search(self, query):
        """Clips by cosine of ``segments.embedding`` to ``query``: a text (encoded with the index's
        model and normalised) or a vector of the embedding's size (normalised here)."""
        from xclip_search.query import Query

        if isinstance(query, str):
            if not query.strip():
                raise ValueError("search(text): a non-empty query text is required")
            return Query(self, SEGMENTS_TABLE, self.encode_text([query], query=True)[0], text=query)
        vec = np.asarray(query, dtype=np.float32)
        dim = self.table(SEGMENTS_TABLE).schema.field("embedding").type.list_size
        norm = float(np.linalg.norm(vec)) if vec.shape == (dim,) else 0.0
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError(f"search(query): expected a text or a non-zero finite vector of {dim} floats, "
                             f"got {type(query).__name__} of shape {vec.shape}")
        return Query(self, SEGMENTS_TABLE, vec / norm)

    def similar(self, item):
        """``similar(video_id)``: videos like it (``videos.embedding``); ``similar((video_id, segment_index))``:
        clips like that clip. The item itself comes first."""
        from schemas.sql import sql_str
        from xclip_search.query import Query

        if isinstance(item, tuple):
            vid, idx = item
            key, table, col = segment_id(vid, int(idx)), SEGMENTS_TABLE, "segment_id"
        else:
            key, table, col = str(item), VIDEOS_TABLE, "video_id"
        rows = self.table(table).search().where(f"{col} = {sql_str(key)}").select(["embedding"]) \
            .limit(1).to_arrow()
        if rows.num_rows == 0 or rows.column("embedding")[0].as_py() is None:
            raise KeyError(f"{item!r}: not in {table!r} (or not indexed ok)")
        vec = np.asarray(rows.column("embedding")[0].as_py(), np.float32)
        return Query(self, table, vec, first=(col, key))


def open_index(uri: str, *, model: str | None = None, device: str = "cpu", precision: str = "fp32") -> Index:
    """Open an index written by ``xclip-index run --output uri`` (local path or ``s3://``).

    ``precision``: how text queries are encoded: ``fp32`` (default: the model as is), ``bf16`` (a
    bf16 copy of the text tower: ~2x faster on a CPU with AVX512-BF16; text features within cosine
    ~0.9999 of fp32, but near ties swap: 85-96% of its top-10 equal fp32's on the 1M benchmark,
    bench/RESULTS.md "Query") or ``auto``: bf16 on CUDA and on CPUs with native bf16
    (``native_bf16``), else fp32. Label sets and reranking always use fp32."""
    return Index(uri, model=model, device=device, precision=precision)
