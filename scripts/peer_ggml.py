"""ggml's own CPU dot products, called through ctypes from a built llama.cpp (dev tool).

The reference scripts use it to record what ``ggml_vec_dot_<type>_<act>`` returns for given
weight rows and activations; nothing in llamacli imports it. The library comes from
``$GGML_CPU_LIB`` or /work/peer/avx2/bin/libggml-cpu.so (the AVX2 build).

Activations are given as llamacli's arrays (``q`` int8, ``d`` float32, ``bsums`` int32, as
``kernels.dot.activations`` fills them) and laid out here as ggml's block_q8_0 / block_q8_K.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

LIB = Path(os.environ.get("GGML_CPU_LIB", "/work/peer/avx2/bin/libggml-cpu.so"))
QK_K = GGML_QUANT_SIZES[T.Q8_K][0]
QK8_0 = GGML_QUANT_SIZES[T.Q8_0][0]

# the activation type ggml pairs with each weight type (its vec_dot_type on x86)
ACT = {T.IQ4_NL: "q8_0", T.NVFP4: "q8_0", T.Q1_0: "q8_0", T.MXFP4: "q8_0"}


def _lib():
    ctypes.CDLL(str(LIB.with_name("libggml-base.so")), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(LIB), mode=ctypes.RTLD_GLOBAL)
    lib.ggml_cpu_init()
    return lib


_LIB = None


def q8_0_bytes(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """block_q8_0 rows: fp16 d, int8 qs[32]."""
    nb = q.shape[0] // QK8_0
    out = np.zeros((nb, 2 + QK8_0), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
    out[:, 2:] = q.reshape(nb, QK8_0).view(np.uint8)
    return out.reshape(-1)


def q8_K_bytes(q: np.ndarray, d: np.ndarray, bsums: np.ndarray) -> np.ndarray:
    """block_q8_K rows: float d, int8 qs[256], int16 bsums[16]."""
    nb = q.shape[0] // QK_K
    out = np.zeros((nb, 4 + QK_K + 2 * (QK_K // 16)), np.uint8)
    out[:, :4] = d.astype(np.float32).view(np.uint8).reshape(nb, 4)
    out[:, 4:4 + QK_K] = q.reshape(nb, QK_K).view(np.uint8)
    out[:, 4 + QK_K:] = bsums.astype(np.int16).view(np.uint8).reshape(nb, -1)
    return out.reshape(-1)


def vec_dot(qtype: T, row: np.ndarray, act: np.ndarray, n: int) -> np.float32:
    """ggml_vec_dot_<type>_<act>(n, &s, 0, row, 0, act, 0, 1)."""
    global _LIB
    if _LIB is None:
        _LIB = _lib()
    kind = ACT.get(qtype, "q8_K")
    fn = getattr(_LIB, f"ggml_vec_dot_{qtype.name.lower()}_{kind}")
    s = ctypes.c_float(0.0)
    row = np.ascontiguousarray(row, np.uint8)
    act = np.ascontiguousarray(act, np.uint8)
    fn(ctypes.c_int(n), ctypes.byref(s), ctypes.c_size_t(0), row.ctypes.data_as(ctypes.c_void_p),
       ctypes.c_size_t(0), act.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_int(1))
    return np.float32(s.value)


def act_bytes(qtype: T, q: np.ndarray, d: np.ndarray, aux: np.ndarray) -> np.ndarray:
    """One activation row in the block layout ggml pairs with this weight type."""
    return q8_0_bytes(q, d) if ACT.get(qtype, "q8_K") == "q8_0" else q8_K_bytes(q, d, aux)


_BASE = None


def quantize_chunk(qtype: T, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
    """ggml_quantize_chunk(type, x, dst, 0, nrows, n_per_row, imatrix) from libggml-base:
    float32[nrows, n_per_row] -> uint8[nrows, row_bytes], what llama-quantize writes."""
    global _BASE
    if _BASE is None:
        _BASE = ctypes.CDLL(str(LIB.with_name("libggml-base.so")), mode=ctypes.RTLD_GLOBAL)
        _BASE.ggml_quantize_chunk.restype = ctypes.c_size_t
        _BASE.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                              ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        _BASE.ggml_quantize_init.argtypes = [ctypes.c_int]
    x = np.ascontiguousarray(x, np.float32)
    nrows, n = x.shape
    bs, ts = GGML_QUANT_SIZES[qtype]
    out = np.zeros((nrows, n // bs * ts), np.uint8)
    w = None
    if imatrix is not None:
        w = np.ascontiguousarray(imatrix, np.float32)
        assert w.shape == (n,)
    _BASE.ggml_quantize_init(int(qtype))
    size = _BASE.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, nrows, n,
                                     None if w is None else w.ctypes.data)
    assert size == out.nbytes, (size, out.nbytes)
    return out
