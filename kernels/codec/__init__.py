"""Bit layouts of the GGML weight types: reference quantize and dequantize, bit-exact with ggml.

``CODECS`` maps a ``GGMLQuantizationType`` to a `Codec` with
``dequantize(rows: uint8[n, row_bytes]) -> float32[n, ne0]`` and
``quantize(rows: float32[n, ne0], nthreads) -> uint8[n, row_bytes]``.

One module per family registers its types: ``floats`` (F32, F16, BF16), ``legacy`` (Q4_0, Q4_1,
Q5_0, Q5_1, Q8_0, Q1_0), ``kquants`` (Q2_K .. Q6_K), ``mxfp4`` (MXFP4, NVFP4), ``ternary``
(TQ1_0, TQ2_0), ``iquants`` (IQ4_NL, IQ4_XS), ``iq2`` (IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M:
the grids of iq2xs_init_impl) and ``iq3`` (IQ3_XXS, IQ3_S: iq3xs_init_impl). The quantizers are
what ``ggml_quantize_chunk`` runs, so what ``llama-quantize`` writes: without an importance
matrix the legacy and K-quants are ggml's ``quantize_row_*_ref``; given one (``weights=``, a
Codec with ``_quantize_weighted``) they are the ``quantize_row_*_impl`` that take
quant_weights. The i-quants always run their ``_impl`` (with their own weighting where there is
no imatrix); IQ2_XXS, IQ2_XS and IQ1_S refuse to run without one, as ggml does. The kernels are
Numba ``@njit`` functions, parallel over rows.

NaN / Inf policy (as llama.cpp): ``llama-quantize`` refuses a tensor whose input data holds a
NaN or an infinity (``ggml_validate_row_data`` on load), so `Codec.quantize` refuses such rows
with a `NonFiniteError` instead of producing bytes whose value depends on undefined C
behaviour. A quantized result whose fp16 scales overflowed to infinity is caught afterwards
by `Codec.validate`, which mirrors ``ggml_validate_row_data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType


class NonFiniteError(ValueError):
    """A row handed to a quantizer holds a NaN or an infinity (llama.cpp refuses those too)."""


def _set_threads(nthreads: int | None) -> None:
    n = numba.config.NUMBA_NUM_THREADS if not nthreads or nthreads <= 0 else nthreads
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


@dataclass(frozen=True)
class Codec:
    """Reference quantize / dequantize of one GGML type; geometry from ``GGML_QUANT_SIZES``.

    ``_quantize(x: float32[n, ne0], out: uint8[n, row_bytes])`` and
    ``_dequantize(q: uint8[n, row_bytes], out: float32[n, ne0])`` are the ``@njit`` kernels
    (parallel over rows); ``_validate(q) -> int`` returns the first row holding an invalid
    (NaN / Inf) value or scale, -1 if none.
    """

    qtype: GGMLQuantizationType
    _quantize: Callable
    _dequantize: Callable
    _validate: Callable
    # ``_quantize_weighted(x, w: float32[ne0], out)``: ggml's ``quantize_*`` given quant_weights
    # (an importance matrix row, the same for every row); None if this codec takes none
    _quantize_weighted: Callable | None = None
    # ggml_quantize_requires_imatrix: the type is refused without weights
    requires_weights: bool = False

    @property
    def takes_weights(self) -> bool:
        return self._quantize_weighted is not None

    @property
    def block_size(self) -> int:
        return GGML_QUANT_SIZES[self.qtype][0]

    @property
    def type_size(self) -> int:
        return GGML_QUANT_SIZES[self.qtype][1]

    def row_bytes(self, ne0: int) -> int:
        if ne0 % self.block_size:
            raise ValueError(f"{self.qtype.name}: row length {ne0} is not a multiple of {self.block_size}")
        return ne0 // self.block_size * self.type_size

    def quantize(self, rows: np.ndarray, nthreads: int | None = None, out: np.ndarray | None = None,
                 check_finite: bool = True, weights: np.ndarray | None = None) -> np.ndarray:
        """float32[n, ne0] -> uint8[n, row_bytes], bit-exact with ggml's ``quantize_chunk``.

        Without `weights` that is ``quantize_row_*_ref`` for the legacy and K-quants; with them
        (float32[ne0], one importance matrix row) it is ``quantize_*`` given quant_weights.
        Rows holding a NaN or an infinity are refused (`NonFiniteError`) unless the caller has
        validated them already (check_finite=False)."""
        if weights is None and self.requires_weights:
            raise ValueError(f"{self.qtype.name}: this quantization requires an importance matrix")
        if weights is not None and self._quantize_weighted is None:
            raise ValueError(f"{self.qtype.name}: this codec takes no importance weights")
        x = np.asarray(rows)
        if x.dtype != np.float32:
            raise TypeError(f"{self.qtype.name}.quantize: expected float32 rows, got {x.dtype}")
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2:
            raise ValueError(f"{self.qtype.name}.quantize: expected a 2-D array, got shape {x.shape}")
        x = np.ascontiguousarray(x)
        n, ne0 = x.shape
        rb = self.row_bytes(ne0)
        _set_threads(nthreads)
        bad = _first_nonfinite_row(x.view(np.uint32)) if check_finite else -1
        if bad >= 0:
            raise NonFiniteError(f"row {bad} holds a NaN or an infinity; llama.cpp refuses such data")
        if out is None:
            out = np.empty((n, rb), dtype=np.uint8)
        elif out.shape != (n, rb) or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"{self.qtype.name}.quantize: out must be uint8[{n}, {rb}], got {out.dtype}{out.shape}")
        if weights is None:
            self._quantize(x, out)
        else:
            w = np.ascontiguousarray(weights, dtype=np.float32).reshape(-1)
            if w.shape[0] != ne0:
                raise ValueError(f"{self.qtype.name}.quantize: {w.shape[0]} weights for rows of {ne0}")
            self._quantize_weighted(x, w, out)
        return out

    def dequantize(self, rows: np.ndarray, nthreads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """uint8[n, row_bytes] -> float32[n, ne0], as ggml's ``dequantize_row_*``."""
        q = np.asarray(rows)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        q = np.ascontiguousarray(q).view(np.uint8)
        n, rb = q.shape
        if rb % self.type_size:
            raise ValueError(f"{self.qtype.name}.dequantize: {rb} bytes a row is not a multiple of {self.type_size}")
        ne0 = rb // self.type_size * self.block_size
        if out is None:
            out = np.empty((n, ne0), dtype=np.float32)
        elif out.shape != (n, ne0) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"{self.qtype.name}.dequantize: out must be float32[{n}, {ne0}]")
        _set_threads(nthreads)
        self._dequantize(q, out)
        return out

    def validate(self, rows: np.ndarray) -> int:
        """First row with a NaN / Inf value or scale (``ggml_validate_row_data``), -1 if none."""
        q = np.ascontiguousarray(np.asarray(rows)).view(np.uint8)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        return int(self._validate(q))


CODECS: dict[GGMLQuantizationType, Codec] = {}


def register(codec: Codec) -> Codec:
    CODECS[codec.qtype] = codec
    return codec


def codec(qtype: GGMLQuantizationType | int) -> Codec:
    """The codec of a type; an unknown one is an error naming it."""
    qt = GGMLQuantizationType(int(qtype))
    c = CODECS.get(qt)
    if c is None:
        raise KeyError(f"no quantize/dequantize for weight type {qt.name}")
    return c


from ._bits import first_nonfinite_row as _first_nonfinite_row  # noqa: E402
from . import floats, legacy, kquants, mxfp4  # noqa: E402,F401  (each registers its types)
from . import iquants, ternary, iq2, iq3  # noqa: E402,F401
