"""Slow, obvious twins of the Numba kernels: plain NumPy in float64, used only by tests."""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

# byte offsets of the fp16 scales inside one block, per type (ggml-common.h)
SCALE_OFFSETS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
    T.IQ2_XXS: (0,), T.IQ2_XS: (0,), T.IQ2_S: (0,), T.IQ3_XXS: (0,), T.IQ3_S: (0,), T.IQ1_S: (0,),
    T.IQ4_XS: (0,), T.IQ4_NL: (0,), T.Q1_0: (0,), T.TQ1_0: (52,), T.TQ2_0: (64,),
    T.IQ1_M: (), T.NVFP4: (),  # scales of their own layout: tests/iquant_blocks.py
}


def random_rows(qtype: T, rows: int, n: int, rng: np.random.Generator, scale: float = 0.01) -> np.ndarray:
    """Random weight rows of a type: random quant bits, finite fp16 scales of about `scale`."""
    if qtype == T.F32:
        return rng.standard_normal((rows, n)).astype(np.float32)
    if qtype == T.F16:
        return rng.standard_normal((rows, n)).astype(np.float16).view(np.uint16)
    if qtype == T.BF16:
        return (rng.standard_normal((rows, n)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    block, size = GGML_QUANT_SIZES[qtype]
    nb = n // block
    w = rng.integers(0, 256, (rows, nb, size), dtype=np.uint8)
    for off in SCALE_OFFSETS[qtype]:
        s = (rng.random((rows, nb)) * scale * 2 + scale * 0.1).astype(np.float16)
        w[:, :, off:off + 2] = s.view(np.uint8).reshape(rows, nb, 2)
    return w.reshape(rows, nb * size)


def weights_f64(qtype: T, rows: np.ndarray) -> np.ndarray:
    if qtype == T.F32:
        return rows.astype(np.float64)
    if qtype == T.F16:
        return rows.view(np.float16).astype(np.float64)
    if qtype == T.BF16:
        return (rows.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return dequantize(rows, qtype).astype(np.float64)


def quantize_act(x: np.ndarray, kind: str):
    """ggml's activation quantization (x86 flavour) in NumPy: returns (q, d, aux)."""
    T_, n = x.shape
    if kind in ("q8_0", "q8_1"):
        b = x.reshape(T_, n // 32, 32).astype(np.float32)
        amax = np.abs(b).max(axis=2)
        d = (amax / np.float32(127)).astype(np.float32)
        with np.errstate(divide="ignore"):
            idd = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
        q = np.rint(b * idd[..., None]).astype(np.int32)
        s = (d * q.sum(axis=2).astype(np.float32)).astype(np.float16).astype(np.float32)
        return q.reshape(T_, n).astype(np.int8), d.astype(np.float16).astype(np.float32), s
    b = x.reshape(T_, n // 256, 256).astype(np.float32)
    idx = np.abs(b).argmax(axis=2)
    mx = np.take_along_axis(b, idx[..., None], axis=2)[..., 0]
    with np.errstate(divide="ignore"):
        iscale = np.where(mx != 0, np.float32(-127) / mx, np.float32(0)).astype(np.float32)
    q = np.minimum(127, np.rint((iscale[..., None] * b).astype(np.float32))).astype(np.int32)
    with np.errstate(divide="ignore"):
        d = np.where(mx != 0, np.float32(1) / iscale, np.float32(0)).astype(np.float32)
    bsums = q.reshape(T_, n // 16, 16).sum(axis=2)
    return q.reshape(T_, n).astype(np.int8), d, bsums


def matmul(qtype: T, rows: np.ndarray, x: np.ndarray, kind: str) -> np.ndarray:
    """out[t, r] as ggml computes it, in float64: weights dequantized, activations quantized."""
    w = weights_f64(qtype, rows)  # (R, n)
    if kind == "f32":
        return x.astype(np.float64) @ w.T
    if kind == "f16":
        return x.astype(np.float16).astype(np.float64) @ w.T
    if kind == "bf16":
        xb = ((x.view(np.uint32) + (0x7FFF + ((x.view(np.uint32) >> 16) & 1))) >> 16 << 16).view(np.float32)
        return xb.astype(np.float64) @ w.T
    q, d, aux = quantize_act(x, kind)
    block = 256 if kind == "q8_K" else 32
    xd = q.astype(np.float64) * np.repeat(d.astype(np.float64), block, axis=1)
    out = xd @ w.T
    if kind == "q8_1":  # ggml uses the stored s = fp16(d * sum q) for the weight minimum
        bs = GGML_QUANT_SIZES[qtype][1]
        nb = rows.shape[1] // bs
        m = rows.reshape(-1, nb, bs)[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)  # (R, nb)
        exact = d.astype(np.float64) * q.reshape(q.shape[0], nb, 32).sum(axis=2)  # (T, nb)
        out += (aux.astype(np.float64) - exact) @ m.T
    return out
