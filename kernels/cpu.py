"""Which of ggml's x86 code paths llamacli reproduces: the one a native build of llama.cpp takes
on this CPU, or the one ``LLAMACLI_CPU`` names.

ggml picks its kernels when it is compiled (GGML_NATIVE builds for the machine they are built
on), and their float arithmetic differs by path:

- ``avx2``: AVX2 + FMA + F16C. Eight-lane accumulators, the AVX2 ggml_v_expf, repacked Q4_0 /
  Q4_K gemv. What an AVX2-only build (GGML_NATIVE=OFF, GGML_AVX2=ON) computes anywhere.
- ``avx512``: AVX-512 F/BW/DQ/VL (Zen 4 and 5, Ice Lake): the f16 and f32 vector dots widen to
  sixteen lanes, softmax and SiLU take the AVX-512 ggml_v_expf (simd512).
- ``amx``: ``avx512`` plus AMX-INT8 (Sapphire Rapids and later): most quantized matrices move to
  the AMX buffer and its kernels (dot/amx).

Every level is computed in software from the same IR, so any level runs, and is tested, on any
x86-64 machine; only its speed depends on the CPU.
"""

from __future__ import annotations

import os

from llvmlite import binding as _llvm

LEVELS = ("avx2", "avx512", "amx")
ENV = "LLAMACLI_CPU"

# the names llama.cpp's system_info line gives the features each level stands for
FEATURES = {
    "avx2": "AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1",
    "avx512": "AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1",
    "amx": "AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1",
}


class CpuLevelError(ValueError):
    pass


def detect() -> str:
    """The level a GGML_NATIVE build of llama.cpp would compile for on this machine."""
    f = _llvm.get_host_cpu_features()
    if all(f.get(k) for k in ("avx512f", "avx512dq", "avx512bw", "avx512vl")):
        return "amx" if f.get("amx-int8") and f.get("amx-tile") and f.get("avx512vnni") else "avx512"
    return "avx2"


def resolve(level: str | None = None) -> str:
    """An explicit level, else $LLAMACLI_CPU, else the detected one."""
    name = level or os.environ.get(ENV) or detect()
    name = name.strip().lower()
    if name not in LEVELS:
        src = "" if level else f" (from ${ENV})"
        raise CpuLevelError(f"unknown CPU level '{name}'{src}; choose one of {', '.join(LEVELS)}")
    return name


def wide(level: str) -> bool:
    """Whether ggml's vector macros are the AVX-512 ones at this level."""
    return level in ("avx512", "amx")
