"""Comparing our logits with llama.cpp's golden top-k records (tests only)."""

from __future__ import annotations

import hashlib

import numpy as np


def kl_topk(ref_ids, ref_logits, ref_lse, ours: np.ndarray) -> np.ndarray:
    """KL(llama.cpp || ours) per position over the reference's top-k tokens plus one bucket for
    the rest of the vocabulary (a coarsening, so never more than the full KL)."""
    o = ours.astype(np.float64)
    o_lse = o.max(axis=1) + np.log(np.exp(o - o.max(axis=1, keepdims=True)).sum(axis=1))
    lp = ref_logits.astype(np.float64) - ref_lse[:, None].astype(np.float64)  # log p, top-k
    lq = np.take_along_axis(o, ref_ids.astype(np.int64), axis=1) - o_lse[:, None]  # log q, same ids
    p, q = np.exp(lp), np.exp(lq)
    rest_p = np.clip(1.0 - p.sum(axis=1), 1e-300, None)
    rest_q = np.clip(1.0 - q.sum(axis=1), 1e-300, None)
    return (p * (lp - lq)).sum(axis=1) + rest_p * (np.log(rest_p) - np.log(rest_q))


def row_hashes(logits: np.ndarray) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(r, dtype=np.float32).tobytes()).hexdigest() for r in logits]
