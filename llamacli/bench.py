"""Throughput benchmarks as llama.cpp's llama-bench (tools/llama-bench/llama-bench.cpp).

A test is a prompt of `n_prompt` tokens (pp), `n_gen` tokens generated one at a time (tg),
or both (pg). As llama-bench: the context holds exactly n_prompt + n_gen tokens, one warm-up
run precedes the timed repetitions (the whole prompt, and one generated token), the cache is
cleared before each repetition, tokens are drawn with C's `rand()` (never seeded, so glibc's
seed 1) modulo the vocabulary with BOS first when the model adds one, and tokens/s is the mean
and the sample standard deviation of n_tokens / time over the repetitions.

`run_bench` is the core; `render` writes llama-bench's md, csv, json and jsonl documents with
its field names. `bench_kernels` times every weight type's matmul on representative shapes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import LlamacliError

# llama-bench's defaults (cmd_params_defaults)
DEFAULT_N_PROMPT = 512
DEFAULT_N_GEN = 128
DEFAULT_REPS = 5
DEFAULT_N_BATCH = 2048  # logical batch: tokens handed to one eval call
DEFAULT_N_UBATCH = 512  # micro-batch: tokens through the graph at once (our load_model's n_batch)
OUTPUT_FORMATS = ("md", "csv", "json", "jsonl")


# -- C's rand() as glibc implements it ------------------------------------------------------

class GlibcRand:
    """glibc `rand()`: the TYPE_3 additive feedback generator (random_r.c), r[i] = r[i-3] + r[i-31].

    llama-bench never calls srand, so its tokens come from seed 1; mirroring the generator
    makes our random prompts the very token ids llama-bench feeds its model."""

    def __init__(self, seed: int = 1):
        r = [0] * 34
        r[0] = seed if seed != 0 else 1
        for i in range(1, 31):  # seeded with the Park-Miller LCG, 16807 * r mod (2^31 - 1)
            hi, lo = divmod(r[i - 1], 127773)
            word = 16807 * lo - 2836 * hi
            r[i] = word + 2147483647 if word < 0 else word
        for i in range(31, 34):
            r[i] = r[i - 31]
        self._r = r[3:34]  # the last 31 words: the state ring
        self._i = 0
        for _ in range(310):  # glibc discards the first 310 outputs
            self._next()

    def _next(self) -> int:
        r, i = self._r, self._i
        v = (r[i] + r[(i + 28) % 31]) & 0xFFFFFFFF  # r[n-31] + r[n-3]
        r[i] = v
        self._i = (i + 1) % 31
        return v >> 1

    def __call__(self) -> int:
        return self._next()


# -- model description as llama_model_desc writes it ----------------------------------------

_SIZE_WORDS = {"S": "Small", "M": "Medium", "L": "Large"}


def ftype_name(file_type: int | None) -> str:
    """llama_ftype_name: MOSTLY_Q4_K_M -> 'Q4_K - Medium', MOSTLY_Q4_1 -> 'Q4_1'."""
    from gguf import LlamaFileType

    if file_type is None:
        return "unknown, may not work"
    try:
        name = LlamaFileType(int(file_type)).name
    except ValueError:
        return "unknown, may not work"
    if name == "ALL_F32":
        return "all F32"
    name = name.removeprefix("MOSTLY_")
    if name == "Q2_K":
        return "Q2_K - Medium"
    head, _, size = name.rpartition("_")
    if head.endswith("_K") and size in _SIZE_WORDS:
        return f"{head} - {_SIZE_WORDS[size]}"
    return name


def guessed_ftype(tensors) -> int:
    """llama_model_loader's guess when general.file_type is missing: the file type of the weight
    type most tensors have, counted in name order (its std::map), the first to lead winning."""
    from gguf import GGMLQuantizationType as T, LlamaFileType as F

    named = {T.F32: F.ALL_F32, T.Q3_K: F.MOSTLY_Q3_K_M, T.Q4_K: F.MOSTLY_Q4_K_M, T.Q5_K: F.MOSTLY_Q5_K_M}
    counts: dict = {}
    best, best_n = T.F32, 0
    for t in sorted(tensors, key=lambda t: t.name.encode()):
        counts[t.qtype] = counts.get(t.qtype, 0) + 1
        if counts[t.qtype] > best_n:
            best, best_n = t.qtype, counts[t.qtype]
    ftype = named.get(best) or getattr(F, "MOSTLY_" + best.name, F.ALL_F32)
    return int(ftype)


@dataclass(frozen=True)
class ModelInfo:
    filename: str
    model_type: str  # "llama 256M Q4_1", as llama_model_desc
    size: int  # bytes of all tensors (llama_model_size)
    n_params: int  # elements of all tensors (llama_model_n_params)


def model_desc(gf, cfg) -> str:
    """llama_model_desc: architecture, the family's LLM_TYPE name (from its spec), file type."""
    file_type = gf.get("general.file_type")
    if file_type is None:
        ftype = "(guessed) " + ftype_name(guessed_ftype(gf.tensors.values()))  # llama_ftype_name's prefix
    else:
        ftype = ftype_name(file_type)
    return " ".join((cfg.arch, cfg.model_type, ftype))


def model_info(model, filename: str) -> ModelInfo:
    tensors = list(model.gguf.tensors.values())
    size = sum(t.n_bytes for t in tensors)
    n_params = sum(t.n_elements for t in tensors)
    return ModelInfo(filename, model_desc(model.gguf, model.cfg), size, n_params)


# -- statistics as llama-bench computes them -------------------------------------------------

def mean(v: list[float]) -> float:
    return sum(v) / len(v) if v else 0.0


def stdev(v: list[float]) -> float:
    """Sample standard deviation (n - 1), 0 for fewer than two samples."""
    if len(v) <= 1:
        return 0.0
    m = mean(v)
    return math.sqrt(max(0.0, sum((x - m) ** 2 for x in v) / (len(v) - 1)))


# -- one test --------------------------------------------------------------------------------

@dataclass
class TestResult:
    info: ModelInfo
    n_prompt: int
    n_gen: int
    n_threads: int
    n_batch: int
    n_ubatch: int
    test_time: str
    samples_ns: list[int] = field(default_factory=list)
    flash_attn: str = "auto"

    @property
    def name(self) -> str:
        if self.n_prompt > 0 and self.n_gen == 0:
            return f"pp{self.n_prompt}"
        if self.n_gen > 0 and self.n_prompt == 0:
            return f"tg{self.n_gen}"
        return f"pp{self.n_prompt}+tg{self.n_gen}"

    @property
    def samples_ts(self) -> list[float]:
        n = self.n_prompt + self.n_gen
        return [1e9 * n / t for t in self.samples_ns]

    @property
    def avg_ns(self) -> int:
        return int(mean(self.samples_ns))

    @property
    def stddev_ns(self) -> int:
        return int(stdev(self.samples_ns))

    @property
    def avg_ts(self) -> float:
        return mean(self.samples_ts)

    @property
    def stddev_ts(self) -> float:
        return stdev(self.samples_ts)


class _Runner:
    """The model under test with llama-bench's token source."""

    def __init__(self, model, rand: GlibcRand, n_batch: int):
        from .tokenizer.vocab import load_vocab

        self.m = model
        self.rand = rand
        self.n_batch = n_batch
        self.n_vocab = model.cfg.n_vocab
        vocab = load_vocab(model.gguf)
        bos = vocab.special.get("bos", -1)
        self.bos = bos if vocab.add_bos and bos >= 0 else None

    def prompt(self, n_prompt: int) -> None:
        """test_prompt: batches of n_batch random tokens, BOS first."""
        done = 0
        while done < n_prompt:
            n = min(n_prompt - done, self.n_batch)
            toks = [self.rand() % self.n_vocab for _ in range(n)]
            if done == 0 and self.bos is not None:
                toks[0] = self.bos
            self.m.eval(toks, want="last")
            done += n

    def gen(self, n_gen: int) -> None:
        """test_gen: one token at a time, BOS first, then random ids."""
        tok = self.bos if self.bos is not None else self.rand() % self.n_vocab
        for _ in range(n_gen):
            self.m.eval([tok], want="last")
            tok = self.rand() % self.n_vocab


Progress = Callable[[str], None]


def run_test(path: str, n_prompt: int, n_gen: int, n_threads: int, reps: int, rand: GlibcRand,
             n_batch: int = DEFAULT_N_BATCH, n_ubatch: int = DEFAULT_N_UBATCH, warmup: bool = True,
             progress: Progress | None = None, flash_attn: str = "auto") -> TestResult:
    from .model.transformer import load_model

    n_ctx = n_prompt + n_gen
    m = load_model(path, n_ctx=n_ctx, n_batch=n_ubatch, n_threads=n_threads, flash_attn=flash_attn)
    res = TestResult(model_info(m, str(path)), n_prompt, n_gen, m.n_threads, n_batch, n_ubatch,
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), flash_attn=flash_attn)
    run = _Runner(m, rand, n_batch)
    say = progress or (lambda s: None)
    m.state.reset()
    if warmup:
        if n_prompt > 0:
            say("warmup prompt run")
            run.prompt(n_prompt)
        if n_gen > 0:
            say("warmup generation run")
            run.gen(1)
    for i in range(reps):
        m.state.reset()
        t0 = time.perf_counter_ns()
        if n_prompt > 0:
            say(f"prompt run {i + 1}/{reps}")
            run.prompt(n_prompt)
        if n_gen > 0:
            say(f"generation run {i + 1}/{reps}")
            run.gen(n_gen)
        res.samples_ns.append(time.perf_counter_ns() - t0)
    return res


@dataclass
class BenchParams:
    models: list[str]
    n_prompt: list[int] = field(default_factory=lambda: [DEFAULT_N_PROMPT])
    n_gen: list[int] = field(default_factory=lambda: [DEFAULT_N_GEN])
    n_pg: list[tuple[int, int]] = field(default_factory=list)
    n_threads: list[int] = field(default_factory=lambda: [2])
    reps: int = DEFAULT_REPS
    n_batch: int = DEFAULT_N_BATCH
    n_ubatch: int = DEFAULT_N_UBATCH
    warmup: bool = True
    flash_attn: str = "auto"  # -fa on|off|auto, llama-bench's default auto

    def tests(self) -> list[tuple[str, int, int, int]]:
        """(model, n_prompt, n_gen, threads) in llama-bench's order: per model and thread
        count, the pp tests, then tg, then pg; a 0 size is skipped."""
        out = []
        for m in self.models:
            for t in self.n_threads:
                out += [(m, p, 0, t) for p in self.n_prompt if p > 0]
                out += [(m, 0, g, t) for g in self.n_gen if g > 0]
                out += [(m, p, g, t) for p, g in self.n_pg if p > 0 or g > 0]
        return out

    def check(self) -> None:
        if not self.models:
            raise LlamacliError("no model given (-m)")
        for m in self.models:
            if not Path(m).is_file():
                raise LlamacliError(f"{m}: no such model file")
        for name, vals in (("-p", self.n_prompt), ("-n", self.n_gen)):
            if any(v < 0 for v in vals):
                raise LlamacliError(f"{name} values must be >= 0, got {vals}")
        if any(p < 0 or g < 0 for p, g in self.n_pg):
            raise LlamacliError(f"-pg values must be >= 0, got {self.n_pg}")
        if any(t < 1 for t in self.n_threads):
            raise LlamacliError(f"-t values must be at least 1, got {self.n_threads}")
        if self.reps < 1:
            raise LlamacliError(f"-r must be at least 1, got {self.reps}")
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise LlamacliError("-b and -ub must be at least 1")
        if not self.tests():
            raise LlamacliError("nothing to run: every test has 0 tokens")


def run_bench(params: BenchParams, on_result: Callable[[TestResult], None] | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> list[TestResult]:
    """Run every test in order; `on_result` sees each as it finishes (for streaming output)."""
    params.check()
    rand = GlibcRand(1)  # one generator for the whole run, as llama-bench's global rand()
    tests = params.tests()
    results = []
    for i, (path, p, g, t) in enumerate(tests, 1):
        say = (lambda s, i=i: progress(i, len(tests), s)) if progress else None
        r = run_test(path, p, g, t, params.reps, rand, params.n_batch, params.n_ubatch, params.warmup, say,
                     params.flash_attn)
        results.append(r)
        if on_result:
            on_result(r)
    return results


# -- output in llama-bench's formats ---------------------------------------------------------

FIELDS = [
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends",
    "model_filename", "model_type", "model_size", "model_n_params", "n_batch",
    "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
    "type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode",
    "main_gpu", "no_kv_offload", "flash_attn", "devices", "tensor_split",
    "tensor_buft_overrides", "load_mode", "lazy_mode",
    "embeddings",
    "no_op_offload", "no_host", "repack", "fit_target", "fit_min_ctx",
    "n_prompt", "n_gen", "n_depth",
    "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
]
INT_FIELDS = {"build_number", "n_batch", "n_ubatch", "n_threads", "poll", "model_size", "model_n_params",
              "n_gpu_layers", "main_gpu", "n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns",
              "no_op_offload", "n_cpu_moe", "fit_target", "fit_min_ctx", "flash_attn"}
BOOL_FIELDS = {"no_kv_offload", "cpu_strict", "embeddings", "no_host", "repack"}
FLOAT_FIELDS = {"avg_ts", "stddev_ts"}
BACKEND = "CPU"


def _build_commit() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=Path(__file__).parent,
                           capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llamacli")
    except PackageNotFoundError:
        return "unknown"


def cpu_info() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_HOST: dict | None = None


def _host() -> dict:
    global _HOST
    if _HOST is None:
        _HOST = {"build_commit": _build_commit(), "cpu_info": cpu_info()}
    return _HOST


def values(r: TestResult) -> dict:
    """One test as llama-bench's fields (typed: int, bool, float or str). Fields that describe
    ggml features llamacli does not have carry the value that means "not used"."""
    h = _host()
    v = {
        "build_commit": h["build_commit"], "build_number": 0, "cpu_info": h["cpu_info"], "gpu_info": "",
        "backends": BACKEND, "model_filename": r.info.filename, "model_type": r.info.model_type,
        "model_size": r.info.size, "model_n_params": r.info.n_params, "n_batch": r.n_batch,
        "n_ubatch": r.n_ubatch, "n_threads": r.n_threads, "cpu_mask": "0x0", "cpu_strict": False, "poll": 0,
        "type_k": "f16", "type_v": "f16", "n_gpu_layers": 0, "n_cpu_moe": 0, "split_mode": "none",
        "main_gpu": 0, "no_kv_offload": False, "flash_attn": FLASH_ATTN_TYPE[r.flash_attn], "devices": "none", "tensor_split": "0.00",
        "tensor_buft_overrides": "none", "load_mode": "mmap", "lazy_mode": "off", "embeddings": False,
        "no_op_offload": 0, "no_host": False, "repack": False, "fit_target": 0, "fit_min_ctx": 0,
        "n_prompt": r.n_prompt, "n_gen": r.n_gen, "n_depth": 0, "test_time": r.test_time,
        "avg_ns": r.avg_ns, "stddev_ns": r.stddev_ns, "avg_ts": round(r.avg_ts, 6),
        "stddev_ts": round(r.stddev_ts, 6),
    }
    assert list(v) == FIELDS
    return v


def _csv_value(k: str, x) -> str:
    if isinstance(x, bool):
        s = str(int(x))
    elif k in FLOAT_FIELDS:
        s = f"{x:.6f}"  # std::to_string(double)
    else:
        s = str(x)
    return '"' + s.replace('"', '""') + '"'


def to_json_obj(r: TestResult) -> dict:
    d = values(r)
    d["samples_ns"] = list(r.samples_ns)
    d["samples_ts"] = [round(x, 6) for x in r.samples_ts]
    return d


def md_size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def md_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"


# llama_flash_attn_type, as llama-bench's json/csv print it
FLASH_ATTN_TYPE = {"auto": -1, "off": 0, "on": 1}

# markdown columns: (header, width; negative = left-aligned), as markdown_printer
MD_COLUMNS = [("model", -30), ("size", 10), ("params", 10), ("backend", -10), ("threads", 7),
              ("test", 15), ("t/s", 20)]


def md_header() -> str:
    head = "|" + "".join(f" {h:>{abs(w)}} |" if w > 0 else f" {h:<{abs(w)}} |" for h, w in MD_COLUMNS)
    rule = "|" + "".join(f" {'-' * (abs(w) - 1)}{':' if w > 0 else '-'} |" for _, w in MD_COLUMNS)
    return head + "\n" + rule + "\n"


def md_row(r: TestResult) -> str:
    cells = [r.info.model_type, md_size(r.info.size), md_params(r.info.n_params), BACKEND, str(r.n_threads),
             r.name, f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"]
    return "|" + "".join(f" {c:>{abs(w)}} |" if w > 0 else f" {c:<{abs(w)}} |"
                         for c, (_, w) in zip(cells, MD_COLUMNS)) + "\n"


class Printer:
    """Streams results in one of llama-bench's formats: header, one test at a time, footer."""

    def __init__(self, fmt: str, out=None):
        if fmt not in OUTPUT_FORMATS:
            raise LlamacliError(f"unknown output format '{fmt}' (choose from {', '.join(OUTPUT_FORMATS)})")
        self.fmt, self.out, self.first = fmt, out or sys.stdout, True

    def header(self) -> None:
        if self.fmt == "md":
            self.out.write(md_header())
        elif self.fmt == "csv":
            self.out.write(",".join(FIELDS) + "\n")
        elif self.fmt == "json":
            self.out.write("[\n")
        self.out.flush()

    def test(self, r: TestResult) -> None:
        f = self.fmt
        if f == "md":
            self.out.write(md_row(r))
        elif f == "csv":
            self.out.write(",".join(_csv_value(k, x) for k, x in values(r).items()) + "\n")
        elif f == "json":  # json_printer's layout: one field a line, the samples on one line each
            d = to_json_obj(r)
            body = "".join(f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n" for k, v in d.items())
            self.out.write(("" if self.first else ",\n") + "  {\n" + body[:-2] + "\n  }")
        else:
            self.out.write(json.dumps(to_json_obj(r), ensure_ascii=False) + "\n")
        self.first = False
        self.out.flush()

    def footer(self) -> None:
        if self.fmt == "md":
            self.out.write(f"\nbuild: {_host()['build_commit']} (llamacli)\n")
        elif self.fmt == "json":
            self.out.write("\n]\n")
        self.out.flush()


def render(results: Iterable[TestResult], fmt: str) -> str:
    import io

    buf = io.StringIO()
    p = Printer(fmt, buf)
    p.header()
    for r in results:
        p.test(r)
    p.footer()
    return buf.getvalue()


# -- kernel throughput --------------------------------------------------------------------------

# (label, n_in, n_out): an FFN up / gate and an FFN down of a small model; n_in is a multiple
# of 256 so every k-quant fits (SmolLM2's 576 is why its file is Q4_1, not Q4_K)
KERNEL_SHAPES = [("ffn_up", 768, 2048), ("ffn_down", 2048, 768)]


@dataclass
class KernelResult:
    qtype: str
    act: str
    shape: str
    n_in: int
    n_out: int
    n_tokens: int
    weight_bytes: int
    us: float  # median time of one matmul, activations already quantized
    load_us: float  # median time to quantize / round the activations once

    @property
    def gb_s(self) -> float:
        return self.weight_bytes / (self.us * 1e3)

    @property
    def gflop_s(self) -> float:
        return 2.0 * self.n_in * self.n_out * self.n_tokens / (self.us * 1e3)

    def as_dict(self) -> dict:
        return {"type": self.qtype, "act": self.act, "shape": self.shape, "n_in": self.n_in,
                "n_out": self.n_out, "n_tokens": self.n_tokens, "weight_bytes": self.weight_bytes,
                "time_us": round(self.us, 3), "act_load_us": round(self.load_us, 3),
                "gb_s": round(self.gb_s, 3), "gflop_s": round(self.gflop_s, 3)}


def _median_time(fn, min_time: float = 0.2, max_reps: int = 200) -> float:
    fn()  # compile / warm the caches
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < max_reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e3


def bench_kernels(n_threads: int, n_tokens: Iterable[int] = (1, 128), types: Iterable[str] | None = None,
                  shapes=KERNEL_SHAPES, min_time: float = 0.2,
                  progress: Callable[[str], None] | None = None) -> list[KernelResult]:
    """Matrix-vector (1 token) and matrix-matrix products for every type in DOTS."""
    import numba
    from gguf import GGMLQuantizationType as T

    from .kernels.codec import codec
    from .kernels.dot import DOTS, Activation

    numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
    chosen = list(DOTS)
    if types is not None:
        names = {t.upper() for t in types}
        unknown = names - {t.name for t in DOTS}
        if unknown:
            raise LlamacliError(f"unknown weight type {', '.join(sorted(unknown))} "
                                f"(known: {', '.join(t.name for t in DOTS)})")
        chosen = [t for t in DOTS if t.name in names]
    rng = np.random.default_rng(0)
    out = []
    for qt in chosen:
        dot = DOTS[qt]
        for label, n_in, n_out in shapes:
            w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
            if qt == T.F32:
                rows = w
            else:  # the types ggml quantizes only with an imatrix get a flat one
                c = codec(qt)
                imx = np.ones(n_in, np.float32) if c.requires_weights else None
                rows = c.quantize(w, n_threads, weights=imx).view(dot.row_dtype)
            rows = np.ascontiguousarray(rows)
            for t in n_tokens:
                if progress:
                    progress(f"{qt.name} {label} x{t}")
                act = Activation(dot.act, n_in, t)
                x = rng.standard_normal((t, n_in)).astype(np.float32)
                y = np.zeros((t, n_out), np.float32)
                load_us = _median_time(lambda: act.load(x), min_time / 4)
                us = _median_time(lambda: act.matmul(dot, rows, y), min_time)
                out.append(KernelResult(qt.name, dot.act, label, n_in, n_out, t, rows.nbytes, us, load_us))
    return out


def render_kernels(results: list[KernelResult], fmt: str, n_threads: int) -> str:
    if fmt in ("json", "jsonl"):
        rows = [dict(r.as_dict(), n_threads=n_threads) for r in results]
        if fmt == "jsonl":
            return "".join(json.dumps(r) + "\n" for r in rows)
        return json.dumps(rows, indent=2) + "\n"
    cols = ["type", "act", "shape", "n_in", "n_out", "tokens", "MiB", "µs", "act µs", "GB/s", "GFLOP/s"]
    table = [[r.qtype, r.act, r.shape, str(r.n_in), str(r.n_out), str(r.n_tokens),
              f"{r.weight_bytes / 2**20:.2f}", f"{r.us:.1f}", f"{r.load_us:.1f}", f"{r.gb_s:.2f}",
              f"{r.gflop_s:.2f}"] for r in results]
    if fmt == "csv":
        return "\n".join(",".join(c) for c in [cols] + table) + "\n"
    return md_table(cols, table, left={0, 1, 2}) + f"\nthreads: {n_threads}\n"


def md_table(cols: list[str], rows: list[list[str]], left: set[int] = frozenset()) -> str:
    w = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w[i]) if i in left else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"

    rule = "| " + " | ".join("-" * w[i] if i in left else "-" * (w[i] - 1) + ":" for i in range(len(cols))) + " |"
    return "\n".join([line(cols), rule] + [line(r) for r in rows]) + "\n"


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))
