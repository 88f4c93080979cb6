"""The lattices and sign tables of the i-quants, as ggml-common.h holds them.

They are decoded from gguf-py's copies (``gguf.quants.<TYPE>.grid_hex`` / ``ksigns`` /
``kvalues``, which llama.cpp keeps equal to ggml-common.h), never retyped here:

* ``IQ2XXS_GRID`` uint8[256, 8], ``IQ2XS_GRID`` uint8[512, 8], ``IQ2S_GRID`` uint8[1024, 8]:
  magnitudes 8, 25, 43 (iq2xxs_grid, iq2xs_grid, iq2s_grid);
* ``IQ3XXS_GRID`` uint8[256, 4] (4 .. 62) and ``IQ3S_GRID`` uint8[512, 4] (1 .. 15);
* ``IQ1S_GRID`` int8[2048, 8] (-1, 0, 1), shared by IQ1_S and IQ1_M;
* ``KSIGNS`` uint8[128]: ksigns_iq2xs, seven sign bits and their parity; ``KEVEN_SIGNS``
  int8[128, 8] is ggml's keven_signs_q2xs (bit j of ksigns[i] set -> -1);
* ``KVALUES_IQ4NL`` int8[16] and ``KVALUES_FP4`` int8[16] (kvalues_iq4nl, kvalues_mxfp4);
* ``UE4M3_TO_F32`` float32[256]: ggml_ue4m3_to_fp32, NVFP4's scales.
"""

from __future__ import annotations

import numpy as np
from gguf import quants as _q


def _grid(cls, dtype) -> np.ndarray:
    cls.init_grid()
    g = np.asarray(cls.grid, np.float32).reshape(cls.grid_shape)
    out = g.astype(dtype)
    assert np.array_equal(out.astype(np.float32), g), cls.__name__
    return np.ascontiguousarray(out)


IQ2XXS_GRID = _grid(_q.IQ2_XXS, np.uint8)
IQ2XS_GRID = _grid(_q.IQ2_XS, np.uint8)
IQ2S_GRID = _grid(_q.IQ2_S, np.uint8)
IQ3XXS_GRID = _grid(_q.IQ3_XXS, np.uint8)
IQ3S_GRID = _grid(_q.IQ3_S, np.uint8)
IQ1S_GRID = _grid(_q.IQ1_S, np.int8)

KSIGNS = np.frombuffer(_q.IQ2_XXS.ksigns, np.uint8).copy()
KEVEN_SIGNS = np.where((KSIGNS[:, None] >> np.arange(8, dtype=np.uint8)) & 1, -1, 1).astype(np.int8)
KVALUES_IQ4NL = np.array(_q.IQ4_NL.kvalues, np.int8)
KVALUES_FP4 = np.array(_q.MXFP4.kvalues, np.int8)
# ggml_ue4m3_to_fp32 of every byte (NVFP4's scales, with the 0.5 of the doubled kvalues)
UE4M3_TO_F32 = np.asarray(_q.NVFP4.ue4m3_to_fp32(np.arange(256, dtype=np.uint8)), np.float32)

IQ1S_DELTA = np.float32(_q.IQ1_S.delta)  # IQ1S_DELTA and IQ1M_DELTA of ggml-common.h (both 0.125)

# every sign pattern has even parity, as ggml's table is built
assert not (np.unpackbits(KSIGNS).reshape(-1, 8).sum(axis=1) % 2).any()
