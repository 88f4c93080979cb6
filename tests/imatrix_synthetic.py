"""Two small imatrix files with fixed contents, for the merge / convert tests and their
reference script (scripts/make_imatrix_reference.py): both tools read the same bytes.

Written with our GGUF writer (the format is checked separately against a file llama-imatrix
wrote); the values are exact functions of their index, no random generator.
"""

from __future__ import annotations

import numpy as np

from llamacli.imatrix import Stats, save_gguf

CHUNK_SIZE = 128


def _values(n: int, seed: int) -> np.ndarray:
    k = np.arange(n, dtype=np.int64)
    return (((k * 37 + seed * 11) % 101 + 1) / np.float64(7 + seed)).astype(np.float32) * np.float32(seed + 1)


def _entries(which: str) -> tuple[dict[str, Stats], list[str], int]:
    s = 1 if which == "a" else 2
    e = {
        "blk.0.attn_q.weight": Stats(_values(64, s), np.array([256 * s], np.int64)),
        "blk.1.attn_q.weight": Stats(_values(64, s + 3), np.array([256 * s], np.int64)),
        "blk.10.ffn_up.weight": Stats(_values(48, s + 5), np.array([256 * s], np.int64)),
        # an expert tensor: 4 matrices of 32, one never routed to (partial data)
        "blk.0.ffn_down_exps.weight": Stats(_values(128, s + 7), np.array([100, 0, 37 * s, 256], np.int64)),
        "output.weight": Stats(_values(64, s + 9), np.array([256 * s], np.int64)),
    }
    if which == "b":
        e["blk.2.attn_k.weight"] = Stats(_values(64, 13), np.array([300], np.int64))
        del e["output.weight"]
    return e, [f"synthetic-{which}.txt"], 2 * s


def write_synthetic(path, which: str) -> None:
    """which: "a" or "b"."""
    stats, datasets, chunks = _entries(which)
    save_gguf(path, stats, datasets, chunks, CHUNK_SIZE)


def model_imatrix_stats(tensors) -> dict[str, Stats]:
    """An imatrix for a model, made up but fixed: every ``blk.*`` matmul weight (tensors:
    (name, ne) pairs, ne in ggml order) gets positive per-column values that vary over three
    orders of magnitude, 256 rows seen per matrix (3-D expert tensors: one slice each). What
    llama-imatrix would collect from a text is not needed to test that both quantizers use the
    same numbers the same way."""
    import zlib

    out = {}
    for name, ne in tensors:
        if not name.startswith("blk.") or not name.endswith(".weight") or len(ne) < 2 or "norm" in name:
            continue
        n_mat = ne[2] if len(ne) > 2 else 1
        n = ne[0] * n_mat
        k = np.arange(n, dtype=np.int64)
        h = zlib.crc32(name.encode())
        v = ((k * 2654435761 + h) % 9973 + 1).astype(np.float64)
        out[name] = Stats((v * v / np.float64(9973.0 * 40.0)).astype(np.float32) * np.float32(256),
                          np.full(n_mat, 256, np.int64))
    return out


def write_model_imatrix(path, tensors, dataset: str = "synthetic.txt") -> None:
    save_gguf(path, model_imatrix_stats(tensors), [dataset], 1, 256)
