"""``llamacli quantize``: rewrite a GGUF in another weight type, byte-identical to llama-quantize.

`quantize_file` is llama_model_quantize_impl (src/llama-quant.cpp), with or without an
importance matrix (``--imatrix``: each tensor's vector, per expert slice, goes to the codec as
``weights``): the per-tensor plan of `plan.make_plan`, then for every tensor in llama.cpp's order
either a copy of its bytes or dequantize -> reference quantize (``kernels/codec``), streamed in
slabs of rows into an `AtomicGGUFWriter` (a temporary file renamed at the end). Input data is
validated as llama.cpp's loader does (no NaN / Inf values or scales), and so is every quantized
result (``ggml_validate_row_data``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, Keys, LlamaFileType

from ..errors import LlamacliError
from ..gguf_io import AtomicGGUFWriter, TensorInfo, kv_uint32
from ..kernels.codec import CODECS, codec
from .scan import ScannedGGUF
from .plan import (Plan, PlanOptions, TensorPlan, ggml_type_name, hparams_of, is_quantized, make_plan, parse_ftype,
                   parse_ggml_type)

__all__ = ["quantize_file", "make_f16", "QuantizeResult", "default_output_path", "ggml_type_name",
           "parse_ftype", "parse_ggml_type", "select_imatrix", "load_quant_imatrix"]

# quantize.cpp: what the output file says of the imatrix it was made with
KV_IMATRIX_FILE = "quantize.imatrix.file"
KV_IMATRIX_DATASET = "quantize.imatrix.dataset"
KV_IMATRIX_N_ENTRIES = "quantize.imatrix.entries_count"
KV_IMATRIX_N_CHUNKS = "quantize.imatrix.chunks_count"
KV_OVERRIDE_STR_MAX = 127  # llama_model_kv_override::val_str holds 128 bytes with its NUL

GGML_QNT_VERSION = 2  # ggml.h: bump on quantization format changes
MIB = 1024.0 * 1024.0
SLAB_ELEMENTS = 1 << 22  # rows are converted in slabs of about this many weights (16 MiB as f32)
GGML_MAX_DIMS = 4
_DROPPED_KEYS = {
    Keys.General.QUANTIZATION_VERSION, Keys.General.FILE_TYPE,
    Keys.Split.LLM_KV_SPLIT_NO, Keys.Split.LLM_KV_SPLIT_COUNT, Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT,
}


def default_output_path(inp: str | os.PathLike, ftype_name: str) -> Path:
    """llama-quantize's default: ggml-model-<TYPE>.gguf beside the input."""
    return Path(inp).parent / f"ggml-model-{ftype_name}.gguf"


@dataclass
class QuantizeResult:
    output: Path | None  # None for a dry run
    plan: Plan
    size_org: int  # bytes of tensor data in, out
    size_new: int
    n_elements: int
    seconds: float


def _shape(ne: tuple[int, ...]) -> str:
    dims = list(ne) + [1] * (GGML_MAX_DIMS - len(ne))
    return ", ".join(f"{d:6d}" for d in dims)


def select_imatrix(loaded, include=(), exclude=()) -> dict[str, np.ndarray]:
    """prepare_imatrix: the per-tensor importance vectors (`imatrix.importance_weights`), then
    the entries whose names contain an --exclude-weights string dropped, or only those that
    contain an --include-weights string kept."""
    from ..imatrix import importance_weights

    include, exclude = list(include), list(exclude)
    if include and exclude:
        raise LlamacliError("--include-weights and --exclude-weights cannot be used together")
    data = importance_weights(loaded)
    for pat in exclude:
        data = {n: v for n, v in data.items() if pat not in n}
    if include:
        data = {n: v for n, v in data.items() if any(pat in n for pat in include)}
    return data


def load_quant_imatrix(path, include=(), exclude=(), log: Callable[[str], None] | None = None):
    """quantize.cpp load_imatrix + prepare_imatrix: (weights by tensor name, datasets, chunk count)."""
    from ..imatrix import load_imatrix

    log = log or (lambda line: None)
    loaded = load_imatrix(path)
    if not loaded.is_legacy and not loaded.has_metadata:
        raise LlamacliError(f"missing imatrix metadata in file {path}")
    if loaded.datasets:
        log("load_imatrix: imatrix datasets=[" + ", ".join(f"'{d}'" for d in loaded.datasets) + "]")
    log(f"load_imatrix: loaded {len(loaded.entries)} importance matrix entries from {path} computed on "
        f"{loaded.chunk_count} chunks")
    data = select_imatrix(loaded, include, exclude)
    if data:
        log(f"prepare_imatrix: have {len(data)} importance matrix entries")
    return data, loaded.datasets, loaded.chunk_count


def _kv_override_str(key: str, value: str) -> tuple[str, bytes]:
    """A string kv override as quantize.cpp sets it: at most 127 bytes (strncpy into val_str)."""
    from ..gguf_io import _gguf_str
    from gguf import GGUFValueType

    b = value.encode("utf-8", "surrogateescape")[:KV_OVERRIDE_STR_MAX].split(b"\0")[0]
    return key, (_gguf_str(key) + int(GGUFValueType.STRING).to_bytes(4, "little")
                 + len(b).to_bytes(8, "little") + b)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b) or a.resolve() == b.resolve()
    except OSError:
        return False


def quantize_file(
    inp: str | os.PathLike,
    out: str | os.PathLike | None = None,
    ftype: str | LlamaFileType = "Q8_0",
    *,
    nthreads: int | None = None,
    allow_requantize: bool = False,
    pure: bool = False,
    leave_output_tensor: bool = False,
    output_tensor_type: str | GGMLQuantizationType | None = None,
    token_embedding_type: str | GGMLQuantizationType | None = None,
    tensor_types: Iterable[tuple[str, str | GGMLQuantizationType]] = (),
    dry_run: bool = False,
    imatrix: str | os.PathLike | None = None,
    include_weights: Iterable[str] = (),
    exclude_weights: Iterable[str] = (),
    log: Callable[[str], None] | None = _stderr,
    on_tensor: Callable[[int, TensorPlan], None] | None = None,
) -> QuantizeResult:
    """Quantize `inp` into `out` as llama-quantize does; returns sizes and the plan.

    ftype: a mixture name ("Q4_K_M", "q8_0", "IQ2_XXS" ...) or a `LlamaFileType`.
    tensor_types: (name regex, type) overrides, first match wins (``--tensor-type``).
    imatrix: an importance matrix file (GGUF or legacy .dat; ``--imatrix``), its entries
    filtered by include_weights / exclude_weights (substrings of tensor names). The path is
    recorded in the output's metadata as given, as llama-quantize records it.
    log: receives llama-quantize's lines (per tensor, warnings, sizes); None for silence.
    """
    t0 = time.perf_counter()
    log = log or (lambda line: None)
    if isinstance(ftype, str):
        ft, ft_name = parse_ftype(ftype)
    else:
        ft = LlamaFileType(ftype)
        ft_name = parse_ftype(str(int(ft)))[1]
    inp = Path(inp)
    if out is None and not dry_run:
        out = default_output_path(inp, ft_name)
    out = Path(out) if out is not None else None
    if not dry_run and _same_file(inp, out):
        raise LlamacliError(f"input and output files are the same: '{inp}'")
    if nthreads is None or nthreads <= 0:
        nthreads = os.cpu_count() or 1
    imx: dict[str, np.ndarray] = {}
    imx_datasets: list[str] = []
    imx_chunks = -1
    include_weights, exclude_weights = list(include_weights), list(exclude_weights)
    if include_weights and exclude_weights:
        raise LlamacliError("--include-weights and --exclude-weights cannot be used together")
    if imatrix is not None:
        imx, imx_datasets, imx_chunks = load_quant_imatrix(imatrix, include_weights, exclude_weights, log)
    if imx:
        log(f"llama_model_quantize_impl: have importance matrix data with {len(imx)} entries")
        for v in imx.values():
            bad = v[~np.isfinite(v)]
            if bad.size:
                raise LlamacliError(f"imatrix contains non-finite value {float(bad[0]):f}")

    def as_type(t):
        return None if t is None else t if isinstance(t, GGMLQuantizationType) else parse_ggml_type(t)

    opts = PlanOptions(
        ftype=ft, allow_requantize=allow_requantize, quantize_output_tensor=not leave_output_tensor,
        pure=pure, output_tensor_type=as_type(output_tensor_type),
        token_embedding_type=as_type(token_embedding_type),
        tensor_types=[(p.lower(), as_type(t)) for p, t in tensor_types], has_imatrix=bool(imx),
    )
    for name, t in ((n, getattr(opts, n)) for n in ("output_tensor_type", "token_embedding_type")):
        if t is not None and t not in CODECS:
            raise LlamacliError(f"--{name.replace('_', '-')}: cannot write type {t.name}")

    gf = ScannedGGUF(inp)
    views = gf.tensors
    plan = make_plan([(v.name, v.ne, v.qtype) for v in views.values()], hparams_of(gf), opts)
    for msg in plan.messages:
        log(msg)
    # the imatrix checks first: they do not depend on which codecs this build has
    if not imx and not dry_run:
        bad = next((tp for tp in plan.tensors if tp.allows_quantization and tp.requires_imatrix), None)
        if bad is not None:
            log("============================================================================")
            log(" ERROR: this quantization requires an importance matrix!")
            log(f"        - offending tensor: {bad.name}")
            log(f"        - target type: {ggml_type_name(bad.dst_type)}")
            log("============================================================================")
            raise LlamacliError("this quantization requires an imatrix!")
    tensor_weights: dict[str, np.ndarray | None] = {}
    if imx and not dry_run:
        for tp in plan.tensors:
            if not tp.converts:
                continue
            w = imx.get(tp.name)
            n_mat = tp.ne[2] if len(tp.ne) > 2 else 1
            if w is None:
                log(f"====== llama_model_quantize_impl: did not find weights for {tp.name}")
            elif w.size != tp.ne[0] * n_mat:
                log(f"====== llama_model_quantize_impl: imatrix size {w.size} is different from tensor size "
                    f"{tp.ne[0] * n_mat} for {tp.name}")
                if tp.name not in ("token_embd.weight", "per_layer_token_embd.weight"):
                    raise LlamacliError(f"imatrix size {w.size} is different from tensor size "
                                        f"{tp.ne[0] * n_mat} for {tp.name}")
                w = None
            if w is None and tp.requires_imatrix:
                raise LlamacliError(f"Missing importance matrix for tensor {tp.name} in a very low-bit quantization")
            tensor_weights[tp.name] = None if tp.dst_type in _IGNORES_IMATRIX else w
    for tp in plan.tensors:
        if tp.converts and tp.dst_type not in CODECS:
            raise LlamacliError(f"tensor '{tp.name}': cannot write type {ggml_type_name(tp.dst_type)}")
        if tp.converts and tp.src_type not in CODECS:
            raise LlamacliError(f"type {ggml_type_name(tp.src_type)} unsupported for integer quantization: "
                                "no dequantization available")

    for tp in plan.tensors:
        if tensor_weights.get(tp.name) is not None and not codec(tp.dst_type).takes_weights:
            raise LlamacliError(f"tensor '{tp.name}': quantizing {ggml_type_name(tp.dst_type)} with an importance "
                                "matrix is not available in this build")
    will_require_imatrix = not imx and any(tp.allows_quantization and tp.requires_imatrix for tp in plan.tensors)
    if not dry_run and not allow_requantize:
        for tp in plan.tensors:
            if tp.converts and is_quantized(tp.src_type):
                raise LlamacliError(f"requantizing from type {ggml_type_name(tp.src_type)} is disabled "
                                    "(use --allow-requantize)")

    n_tensors = len(plan.tensors)
    n_elements = sum(v.n_elements for v in views.values())
    size_org = size_new = 0

    if dry_run:
        for i, tp in enumerate(plan.tensors):
            v = views[tp.name]
            head = f"[{i + 1:4d}/{n_tensors:4d}] {tp.name:<36} - [{_shape(tp.ne)}], type = {ggml_type_name(tp.src_type):>6}, "
            if tp.converts:
                new = TensorInfo(tp.name, tp.ne, tp.dst_type).n_bytes
                log(head + f"size = {v.n_bytes / MIB:8.2f} MiB -> {new / MIB:8.2f} MiB ({ggml_type_name(tp.dst_type)})")
            else:
                new = v.n_bytes
                log(head + f"size = {new / MIB:8.3f} MiB")
            size_org += v.n_bytes
            size_new += new
            if on_tensor:
                on_tensor(i, tp)
    else:
        kv = [(k, e.raw) for k, e in gf.kv.items() if k not in _DROPPED_KEYS]
        kv.append(kv_uint32(Keys.General.QUANTIZATION_VERSION, GGML_QNT_VERSION))
        kv.append(kv_uint32(Keys.General.FILE_TYPE, int(ft)))
        if imx:  # quantize.cpp's kv overrides, applied after the copy (gguf_set_val: replaced at the end)
            extra = [_kv_override_str(KV_IMATRIX_FILE, str(imatrix))]
            if imx_datasets:
                extra.append(_kv_override_str(KV_IMATRIX_DATASET, imx_datasets[0]))
            extra.append(kv_uint32(KV_IMATRIX_N_ENTRIES, len(imx)))
            if imx_chunks > 0:
                extra.append(kv_uint32(KV_IMATRIX_N_CHUNKS, imx_chunks))
            names = {k for k, _ in extra}
            kv = [(k, b) for k, b in kv if k not in names] + extra
        infos = [TensorInfo(tp.name, tp.ne, tp.dst_type) for tp in plan.tensors]
        # aligned to 32 as gguf_init_empty's context is, whatever general.alignment says
        with AtomicGGUFWriter(out, kv, infos) as w:
            for i, tp in enumerate(plan.tensors):
                v = views[tp.name]
                head = f"[{i + 1:4d}/{n_tensors:4d}] {tp.name:<36} - [{_shape(tp.ne)}], type = {ggml_type_name(tp.src_type):>6}, "
                if not tp.converts:
                    log(head + f"size = {v.n_bytes / MIB:8.3f} MiB")
                    new = _copy_tensor(gf, v, i, w)
                else:
                    new = _convert_tensor(gf, v, tp, i, w, nthreads, tensor_weights.get(tp.name))
                    log(head + f"converting to {ggml_type_name(tp.dst_type)} .. "
                        f"size = {v.n_bytes / MIB:8.2f} MiB -> {new / MIB:8.2f} MiB")
                size_org += v.n_bytes
                size_new += new
                if on_tensor:
                    on_tensor(i, tp)

    log(f"llama_model_quantize_impl: model size  = {size_org / MIB:8.2f} MiB ({size_org * 8.0 / n_elements:.2f} BPW)")
    log(f"llama_model_quantize_impl: quant size  = {size_new / MIB:8.2f} MiB ({size_new * 8.0 / n_elements:.2f} BPW)")
    if dry_run and will_require_imatrix:
        log("llama_model_quantize_impl: WARNING: dry run completed successfully, but actually completing "
            "this quantization will require an imatrix!")
    if plan.n_fallback > 0:
        log(f"llama_model_quantize_impl: WARNING: {plan.n_fallback} of {n_tensors} tensor(s) required "
            "fallback quantization")
    return QuantizeResult(None if dry_run else out, plan, size_org, size_new, n_elements,
                          time.perf_counter() - t0)


def _raw_rows(gf, v) -> np.ndarray:
    """The tensor's bytes in the mapped file as uint8[n_rows, row_bytes] (a view, no copy)."""
    block, type_size = GGML_QUANT_SIZES[v.qtype]
    row_bytes = v.ne[0] // block * type_size
    return v.data.reshape(-1, row_bytes)


def _slabs(n_rows: int, ne0: int):
    step = max(1, SLAB_ELEMENTS // max(1, ne0))
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)


def _copy_tensor(gf, v, index: int, w: AtomicGGUFWriter) -> int:
    """Copy in slabs of whole rows, each validated as llama.cpp's loader does."""
    rows = _raw_rows(gf, v)
    c = CODECS.get(v.qtype)
    for r0, r1 in _slabs(rows.shape[0], v.ne[0]):
        slab = rows[r0:r1]
        if c is not None and c.validate(slab) >= 0:
            raise LlamacliError(f"tensor '{v.name}' has invalid data")
        w.write(index, slab)
        gf.release(v.offset + r0 * rows.shape[1], (r1 - r0) * rows.shape[1])
    return v.n_bytes


def _expert_slabs(n_rows: int, ne0: int, rows_per_expert: int):
    """(r0, r1, expert) slabs that never cross an expert's rows (each has its own imatrix slice)."""
    for e0 in range(0, n_rows, rows_per_expert):
        for r0, r1 in _slabs(min(rows_per_expert, n_rows - e0), ne0):
            yield e0 + r0, e0 + r1, e0 // rows_per_expert


def _convert_tensor(gf, v, tp: TensorPlan, index: int, w: AtomicGGUFWriter, nthreads: int,
                    imatrix: np.ndarray | None = None) -> int:
    """Dequantize (unless F32) and quantize slab by slab; validate input and output. imatrix:
    float32[ne0 * n_expert], expert e's rows quantized with slice e (llama_tensor_quantize_impl)."""
    src, dst = codec(tp.src_type), codec(tp.dst_type)
    rows = _raw_rows(gf, v)
    ne0 = v.ne[0]
    new = 0
    f32 = None
    rows_per_expert = v.ne[1] if len(v.ne) > 1 else 1
    for r0, r1, ex in _expert_slabs(rows.shape[0], ne0, rows_per_expert):
        slab = rows[r0:r1]
        if src.validate(slab) >= 0:
            raise LlamacliError(f"tensor '{v.name}' has invalid data")
        if tp.src_type == GGMLQuantizationType.F32:
            x = np.ascontiguousarray(slab).view(np.float32)
        else:
            if f32 is None or f32.shape[0] < r1 - r0:
                f32 = np.empty((r1 - r0, ne0), dtype=np.float32)
            x = src.dequantize(slab, _threads_for((r1 - r0) * ne0, _DEQUANTIZE_NS, nthreads),
                               out=f32[:r1 - r0])
        nt = _threads_for((r1 - r0) * ne0, _QUANTIZE_NS.get(tp.dst_type, 90), nthreads)
        if imatrix is not None:
            q = dst.quantize(x, nt, check_finite=False, weights=imatrix[ex * ne0:(ex + 1) * ne0])
        else:
            q = dst.quantize(x, nt, check_finite=False)
        if dst.validate(q) >= 0:
            raise LlamacliError(f"quantized data validation failed (tensor '{v.name}', type {ggml_type_name(tp.dst_type)})")
        w.write(index, q)
        new += q.nbytes
        gf.release(v.offset + r0 * rows.shape[1], (r1 - r0) * rows.shape[1])
    return new


# Rough single-thread cost of each kernel, ns per weight (quantize; dequantize is ~1 for all).
# A parallel region is nearly free on an idle machine but costs a whole time slice (several ms)
# when another process holds the other core, so slabs too small to repay that run on one thread.
_QUANTIZE_NS = {
    GGMLQuantizationType.F32: 0.3, GGMLQuantizationType.F16: 0.5, GGMLQuantizationType.BF16: 0.5,
    GGMLQuantizationType.Q4_0: 3, GGMLQuantizationType.Q4_1: 3, GGMLQuantizationType.Q5_0: 3,
    GGMLQuantizationType.Q5_1: 3, GGMLQuantizationType.Q8_0: 4, GGMLQuantizationType.Q3_K: 18,
    GGMLQuantizationType.Q2_K: 90, GGMLQuantizationType.Q4_K: 90, GGMLQuantizationType.Q5_K: 90,
    GGMLQuantizationType.Q6_K: 90,
}
_DEQUANTIZE_NS = 1.0

# types whose ggml quantize_* ignores quant_weights (quantize_q8_0, _q1_0, _mxfp4, _nvfp4, _tq1_0,
# _tq2_0; the float conversions take none): the imatrix is looked up for them but not passed on
_IGNORES_IMATRIX = {GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q1_0, GGMLQuantizationType.MXFP4,
                    GGMLQuantizationType.NVFP4, GGMLQuantizationType.TQ1_0,
                    GGMLQuantizationType.TQ2_0, GGMLQuantizationType.F16, GGMLQuantizationType.BF16,
                    GGMLQuantizationType.F32}
_MIN_PARALLEL_NS = 4e6  # a slab worth less than ~4 ms of one core runs on one thread


def _threads_for(n_elements: int, ns_per_weight: float, nthreads: int) -> int:
    return nthreads if n_elements * ns_per_weight >= _MIN_PARALLEL_NS else 1


def make_f16(src: str | os.PathLike, dst: str | os.PathLike, nthreads: int | None = None,
             log: Callable[[str], None] | None = None) -> Path:
    """The F16 model llama.cpp makes from `src` (``llama-quantize --allow-requantize src dst F16``).

    The golden data starts from these files; tests make them with this function, so CI needs
    no llama.cpp.
    """
    r = quantize_file(src, dst, "F16", nthreads=nthreads, allow_requantize=True, log=log)
    return r.output
