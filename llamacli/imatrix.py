"""``llamacli imatrix``: importance matrices, as llama.cpp's llama-imatrix computes, stores and merges them.

Mirrors tools/imatrix/imatrix.cpp and common/imatrix-loader.cpp:

* `Collector.observe` is `IMatrixCollector::collect_imatrix`. The model calls it with every
  matmul's float32 input (``Model.observe``); for each weight it keeps, per column, the sum
  over rows of x*x in float32, rows added one after another (``acc[j] += x[j]*x[j]``: a float
  multiply, then a float add; the reference build does not fuse them), and the number of rows.
  Dense matmuls of fewer than 16 rows are ignored, and only weights named ``blk.*`` (and
  ``output.weight`` with ``process_output``) count; each expert of a 3-D expert tensor
  (ggml_mul_mat_id) has its own slice and count, whatever the batch.
* `compute_imatrix` is `compute_imatrix`: the text in chunks of ``n_ctx`` tokens, each from an
  empty cache with BOS first when the vocabulary adds one, evaluated in batches of ``n_batch``
  with every position's logits; the perplexity of each chunk's second half is reported as it
  goes (``[1]28.7163,[2]31.0382,``).
* The GGUF file (`save_gguf`) holds ``<name>.in_sum2`` (ne0 x n_mat) and ``<name>.counts``
  (1 x n_mat) as F32 tensors in name order, with ``general.type = imatrix``,
  ``imatrix.datasets``, ``imatrix.chunk_count`` and ``imatrix.chunk_size``. The legacy ``.dat``
  (`save_dat`) holds sums / count * ncall per entry, then the chunk count and the text's name.
* `Collector.merge` is `IMatrixCollector::load_imatrix` (``--in-file``): raw sums and counts
  add up; a legacy file's values are scaled back by the chunk size.
* `load_imatrix` is common_imatrix_load; `importance_weights` turns it into the per-tensor
  vectors llama-quantize passes to the quantizers (quantize.cpp ``load_imatrix``).

Our activations are those of our engine, bit-identical to llama.cpp's one-token decode path;
llama-imatrix runs batches (16 rows at least), whose float order differs a little, so the sums
agree to a relative ~1e-5 rather than bit for bit (tests/test_imatrix.py says by how much).
"""

from __future__ import annotations

import math
import os
import re
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType

from .errors import LlamacliError

GGUF_MAGIC = b"GGUF"
KEY_TYPE = "general.type"
KEY_DATASETS = "imatrix.datasets"  # LLM_KV_IMATRIX_DATASETS
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
SUFFIX_SUMS = ".in_sum2"
SUFFIX_COUNTS = ".counts"
MIN_ROWS = 16  # collect_imatrix: "why are small batches ignored (<16 tokens)?"
N_UBATCH = 512  # llama.cpp's default micro-batch (-ub)
DEFAULT_CTX = 512  # llama-imatrix's -c
DEFAULT_BATCH = 2048  # common_params n_batch
DEFAULT_OUT = "imatrix.gguf"
DEFAULT_OUT_FREQ = 10  # --output-frequency: the output file is rewritten every 10 chunks
_EXPERT = re.compile(r"^(.*)\[(\d+)\]$")  # model/weights.py names expert e of a 3-D tensor "<name>[e]"


# ---------------------------------------------------------------------------------------------
# accumulation


@numba.njit(cache=True, nogil=True)
def _add_squares(acc, x):
    """acc[j] += x[r, j] * x[r, j] for r in order (collect_imatrix's inner loops), float32."""
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):
            v = x[r, j] * x[r, j]
            acc[j] += v


def add_squares_slow(acc: np.ndarray, x: np.ndarray) -> None:
    """The plain twin of `_add_squares` (tests)."""
    for r in range(x.shape[0]):
        acc += x[r] * x[r]


def add_squares(acc: np.ndarray, x: np.ndarray) -> None:
    if x.dtype != np.float32 or acc.dtype != np.float32 or x.ndim != 2 or acc.shape != (x.shape[1],):
        raise ValueError(f"add_squares: acc {acc.dtype}{acc.shape}, x {x.dtype}{x.shape}")
    _add_squares(acc, x)


@dataclass
class Stats:
    """One weight's sums of squared inputs (n_mat * ne0 float32) and rows seen per matrix."""

    values: np.ndarray
    counts: np.ndarray  # int64[n_mat]

    @property
    def n_mat(self) -> int:
        return self.counts.shape[0]


# ---------------------------------------------------------------------------------------------
# files


@dataclass
class Loaded:
    """common_imatrix: what a file holds, before normalisation."""

    entries: dict[str, Stats]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    is_legacy: bool = False
    has_metadata: bool = False


def load_imatrix(path: str | os.PathLike) -> Loaded:
    """common_imatrix_load: a GGUF imatrix, else the legacy binary format."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise LlamacliError(f"{p}: no such imatrix file") from None
    except OSError as e:
        raise LlamacliError(f"{p}: cannot be read ({e.strerror})") from None
    if magic == GGUF_MAGIC:
        return _load_gguf(p)
    return _load_legacy(p)


def _load_gguf(p: Path) -> Loaded:
    from .gguf_io import open_gguf

    gf = open_gguf(p)
    if not gf.tensors:
        raise LlamacliError(f"{p}: no data in the imatrix file")
    ds = gf.strings(KEY_DATASETS) if gf.field_type(KEY_DATASETS) == GGUFValueType.ARRAY else None
    has_cc, has_cs = gf.get(KEY_CHUNK_COUNT) is not None, gf.get(KEY_CHUNK_SIZE) is not None
    out = Loaded({}, list(ds or []), int(gf.get(KEY_CHUNK_COUNT, 0)), int(gf.get(KEY_CHUNK_SIZE, 0)),
                 False, gf.get(KEY_DATASETS) is not None and has_cc and has_cs)
    pairs: dict[str, list] = {}
    for name, t in gf.tensors.items():
        for suffix, slot in ((SUFFIX_SUMS, 0), (SUFFIX_COUNTS, 1)):
            if name.endswith(suffix) and len(name) > len(suffix):
                pairs.setdefault(name[:-len(suffix)], [None, None])[slot] = t
    for name in sorted(pairs):
        sums, counts = pairs[name]
        if sums is None or counts is None:
            raise LlamacliError(f"{p}: mismatched sums and counts for {name}")
        if sums.qtype != GGMLQuantizationType.F32 or counts.qtype != GGMLQuantizationType.F32:
            raise LlamacliError(f"{p}: sums and counts for {name} must be F32")
        c = _f32(counts.data)
        # std::lround: halves away from zero
        rc = np.where(c >= 0, np.floor(c.astype(np.float64) + 0.5), np.ceil(c.astype(np.float64) - 0.5))
        out.entries[name] = Stats(_f32(sums.data).copy(), rc.astype(np.int64))
    return out


def _f32(data) -> np.ndarray:
    """A tensor's data as flat float32 (whatever shape or byte view the mapping gives)."""
    a = np.ascontiguousarray(data).reshape(-1)
    return a if a.dtype == np.float32 else a.view(np.float32)


def _load_legacy(p: Path) -> Loaded:
    """common_imatrix_load_legacy: int32 n_entries, then per entry (len, name, ncall, nval,
    float32[nval]); optionally the chunk count and the dataset's name."""
    buf = p.read_bytes()
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(buf):
            raise LlamacliError(f"{p}: truncated legacy imatrix file ({what})")
        b = buf[pos:pos + n]
        pos += n
        return b

    def i32(what: str) -> int:
        return struct.unpack("<i", take(4, what))[0]

    if len(buf) < 4:
        raise LlamacliError(f"{p}: not an imatrix file (neither GGUF nor the legacy format)")
    n_entries = i32("entry count")
    if n_entries < 1:
        raise LlamacliError(f"{p}: no data in the imatrix file")
    out = Loaded({}, is_legacy=True)
    for i in range(n_entries):
        n = i32("name length")
        if n < 0:
            raise LlamacliError(f"{p}: bad name length {n} for entry {i + 1}")
        name = take(n, f"name of entry {i + 1}").split(b"\0")[0].decode("utf-8", "replace")
        ncall, nval = i32("ncall"), i32("nval")
        if nval < 1:
            raise LlamacliError(f"{p}: failed reading number of values for entry {i}")
        vals = np.frombuffer(take(4 * nval, f"data of entry {i}"), np.float32).copy()
        out.entries[name] = Stats(vals, np.array([ncall], np.int64))
    if pos < len(buf):  # the trailing chunk count and dataset name are optional
        if pos + 4 <= len(buf):
            out.chunk_count = i32("chunk count")
            if pos + 4 <= len(buf):
                n = i32("dataset length")
                if n > 0 and pos + n <= len(buf):
                    out.datasets.append(take(n, "dataset").split(b"\0")[0].decode("utf-8", "replace"))
    return out


def _kv_str(key: str, value: str) -> tuple[str, bytes]:
    from .gguf_io import _gguf_str

    return key, _gguf_str(key) + int(GGUFValueType.STRING).to_bytes(4, "little") + _gguf_str(value)


def _kv_str_array(key: str, values: list[str]) -> tuple[str, bytes]:
    from .gguf_io import _gguf_str

    body = int(GGUFValueType.STRING).to_bytes(4, "little") + len(values).to_bytes(8, "little")
    body += b"".join(_gguf_str(v) for v in values)
    return key, _gguf_str(key) + int(GGUFValueType.ARRAY).to_bytes(4, "little") + body


def save_gguf(path: str | os.PathLike, stats: dict[str, Stats], datasets: list[str], chunk_count: int,
              chunk_size: int) -> Path:
    """IMatrixCollector::save_imatrix: every entry, partial or not, in name order (bytewise)."""
    from .gguf_io import AtomicGGUFWriter, TensorInfo, kv_uint32

    kv = [_kv_str(KEY_TYPE, "imatrix"), _kv_str_array(KEY_DATASETS, datasets),
          kv_uint32(KEY_CHUNK_COUNT, chunk_count), kv_uint32(KEY_CHUNK_SIZE, chunk_size)]
    names = sorted((n for n, s in stats.items() if s.values.size and s.n_mat), key=lambda n: n.encode())
    infos, blobs = [], []
    for n in names:
        s = stats[n]
        infos.append(TensorInfo(n + SUFFIX_SUMS, (s.values.size // s.n_mat, s.n_mat), GGMLQuantizationType.F32))
        infos.append(TensorInfo(n + SUFFIX_COUNTS, (1, s.n_mat), GGMLQuantizationType.F32))
        blobs += [s.values.astype(np.float32), s.counts.astype(np.float32)]
    path = Path(path)
    with AtomicGGUFWriter(path, kv, infos) as w:
        for i, b in enumerate(blobs):
            w.write(i, np.ascontiguousarray(b))
    return path


def legacy_bytes(stats: dict[str, Stats], chunk_size: int, last_chunk: int, dataset: str,
                 warn: Callable[[str], None] | None = None) -> bytes:
    """IMatrixCollector::save_imatrix_legacy's bytes: entries with no data are left out; a
    matrix never routed to stores ones."""
    to_store = []
    for name, s in stats.items():
        n_all = s.n_mat
        if n_all == 0:
            continue
        n_zeros = int((s.counts == 0).sum())
        if n_zeros == n_all:
            if warn:
                warn(f"save_imatrix_legacy: entry '{name:>40}' has no data - skipping")
            continue
        if n_zeros and warn:
            warn(f"save_imatrix_legacy: entry '{name:>40}' has partial data ({100.0 * (n_all - n_zeros) / n_all:.2f}%)")
        to_store.append(name)
    to_store.sort(key=lambda n: n.encode())
    parts = [struct.pack("<i", len(to_store))]
    for name in to_store:
        s = stats[name]
        nb = name.encode()
        parts += [struct.pack("<i", len(nb)), nb]
        ncall = (int(s.counts.max()) + chunk_size - 1) // chunk_size  # ceiling: no accidental zeros
        nval, nmat = s.values.size, s.n_mat
        parts.append(struct.pack("<ii", ncall, nval))
        if nval and nmat:
            count = np.repeat(s.counts.astype(np.float32), nval // nmat)
            value = s.values.astype(np.float32).copy()
            zero = count == 0
            value[zero], count[zero] = 1.0, 1.0
            parts.append(((value / count) * np.float32(ncall)).astype(np.float32).tobytes())
    db = dataset.encode()
    parts += [struct.pack("<i", last_chunk), struct.pack("<i", len(db)), db]
    return b"".join(parts)


def _write_atomic(path: Path, data: bytes) -> None:
    d = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f"{path.name}.part-")
    except OSError as e:
        raise LlamacliError(f"{path}: cannot create the output file ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        m = os.umask(0)
        os.umask(m)
        os.chmod(tmp, 0o644 & ~m)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# the collector


class Collector:
    """IMatrixCollector: the statistics of one run, its saving schedule and its merges."""

    def __init__(self, out_file: str | os.PathLike = DEFAULT_OUT, chunk_size: int = DEFAULT_CTX,
                 process_output: bool = False, dat: bool | None = None, out_freq: int = DEFAULT_OUT_FREQ,
                 save_freq: int = 0, prompt_file: str = "", n_expert: int = 0,
                 log: Callable[[str], None] | None = None):
        self.out_file = str(out_file)
        self.chunk_size = chunk_size  # n_ctx / n_parallel: one chunk's tokens
        self.process_output = process_output
        self.dat = dat  # None: GGUF, not asked for explicitly; True: legacy; False: --output-format gguf
        self.out_freq = out_freq
        self.save_freq = save_freq
        self.prompt_file = prompt_file
        self.n_expert = n_expert
        self.log = log or (lambda line: None)
        self.stats: dict[str, Stats] = {}
        self.datasets: list[str] = []
        self.last_chunk = 0

    # -- collect_imatrix ------------------------------------------------------------------------

    def observe(self, w, x: np.ndarray) -> None:
        """`Model.observe`: w is the Linear multiplied, x its (rows, n_in) float32 input."""
        m = _EXPERT.match(w.name)
        if m is not None:
            self._observe_expert(m.group(1), int(m.group(2)), x)
            return
        name = w.name
        if x.shape[0] < MIN_ROWS:
            return
        if not (name.startswith("blk.") or (self.process_output and name == "output.weight")):
            return
        ne0 = x.shape[1]
        e = self.stats.get(name)
        if e is None:
            e = self.stats[name] = Stats(np.zeros(ne0, np.float32), np.zeros(1, np.int64))
        elif e.n_mat > 1 and (e.counts == e.counts[0]).all():
            # one count per dense tensor (older merged files broadcast 3-D counts)
            e.counts = e.counts[:1].copy()
        if e.values.size != ne0:
            raise LlamacliError(f"inconsistent size for {name} ({e.values.size} vs {ne0})")
        add_squares(e.values, np.ascontiguousarray(x, dtype=np.float32))
        if not np.isfinite(e.values).all():
            raise LlamacliError(f"non-finite values detected in {name}")
        for i in range(e.n_mat):
            e.counts[i] += x.shape[0]
            self._check_chunk(int(e.counts[i]))

    def _observe_expert(self, name: str, ex: int, x: np.ndarray) -> None:
        """The mul_mat_id branch: expert `ex` of `name` saw the rows of x (its routed tokens)."""
        n_as = self.n_expert
        if n_as <= 0:
            raise LlamacliError(f"expert tensor {name} in a model without experts")
        ne0 = x.shape[1]
        e = self.stats.get(name)
        if e is None:
            e = self.stats[name] = Stats(np.zeros(ne0 * n_as, np.float32), np.zeros(n_as, np.int64))
        else:
            if e.n_mat == 1 and n_as > 1:  # broadcast, when loading an old imatrix
                e.counts = np.full(n_as, e.counts[0], np.int64)
            if e.values.size != ne0 * n_as:
                raise LlamacliError(f"inconsistent size for {name} ({e.values.size} vs {ne0 * n_as})")
            if e.n_mat != n_as:
                raise LlamacliError(f"inconsistent expert count for {name} ({e.n_mat} vs {n_as})")
        acc = e.values[ex * ne0:(ex + 1) * ne0]
        add_squares(acc, np.ascontiguousarray(x, dtype=np.float32))
        e.counts[ex] += x.shape[0]
        if not np.isfinite(acc).all():
            raise LlamacliError(f"non-finite values detected in {name}")
        for c in e.counts:
            self._check_chunk(int(c))

    def _check_chunk(self, count: int) -> None:
        n_chunk = count // self.chunk_size
        if n_chunk > self.last_chunk:
            step = n_chunk - self.last_chunk
            self.last_chunk = n_chunk
            if (self.last_chunk % self.out_freq) // step == 0:
                self.save()
            if self.save_freq > 0 and (self.last_chunk % self.save_freq) // step == 0:
                self.save(self.last_chunk)

    # -- load_imatrix (--in-file) -----------------------------------------------------------------

    def merge(self, loaded: Loaded, source: str = "") -> None:
        cs = self.chunk_size
        for name, entry in loaded.entries.items():
            e = self.stats.get(name)
            if loaded.is_legacy:
                # sums hold (raw / count) * ncall and counts {ncall}: back to raw by the chunk size
                if e is None:
                    e = self.stats[name] = Stats(np.zeros(entry.values.size, np.float32), np.zeros(1, np.int64))
                e.values += entry.values * np.float32(cs)
                e.counts += entry.counts[0] * cs
            else:
                nval, ncounts = entry.values.size, entry.n_mat
                if e is None:
                    e = self.stats[name] = Stats(np.zeros(nval, np.float32), np.zeros(ncounts, np.int64))
                elif e.values.size != nval:
                    raise LlamacliError(f"{source}: mismatched sums size for {name}: {nval} != {e.values.size}")
                if e.n_mat == 1 and ncounts > 1:
                    e.counts = np.full(ncounts, e.counts[0], np.int64)
                elif e.n_mat != ncounts:
                    raise LlamacliError(f"{source}: mismatched counts size for {name}: {ncounts} != {e.n_mat}")
                e.values += entry.values
                e.counts += entry.counts
        self.datasets += loaded.datasets
        max_count = max((int(s.counts.max()) for s in self.stats.values() if s.n_mat), default=0)
        self.last_chunk = max_count // cs

    # -- saving ---------------------------------------------------------------------------------

    def save(self, n_chunk: int = -1) -> Path:
        fname = self.out_file
        if self.dat:
            if n_chunk > 0:
                fname += f".at_{n_chunk}"
            dataset = self.prompt_file
            if not dataset and self.datasets:
                dataset = self.datasets[-1]
            p = Path(fname)
            _write_atomic(p, legacy_bytes(self.stats, self.chunk_size, self.last_chunk, dataset, self.log))
            return p
        if self.dat is None and not fname.endswith(".gguf"):
            self.log("save_imatrix: saving imatrix using GGUF format with a different suffix than .gguf")
            self.log("save_imatrix: if you want the previous imatrix format, use --output-format dat")
        if n_chunk > 0:
            fname += f".at_{n_chunk}"
        for name, s in self.stats.items():
            n_zeros = int((s.counts == 0).sum())
            if n_zeros:
                self.log(f"save_imatrix: entry '{name:>40}' has partial data "
                         f"({100.0 * (s.n_mat - n_zeros) / s.n_mat:.2f}%)")
        datasets = self.datasets + ([self.prompt_file] if self.prompt_file else [])
        return save_gguf(fname, self.stats, datasets, self.last_chunk, self.chunk_size)


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class ImatrixResult:
    n_chunks: int
    n_ctx: int
    n_tokens: int
    chunk_ppl: list[float]
    ppl: float | None
    ppl_stderr: float | None


def compute_imatrix(model, tokens: np.ndarray, n_ctx: int, n_batch: int, bos: int | None,
                    collector: Collector, max_chunks: int = -1, compute_ppl: bool = True,
                    skip_chunks: int = 0,
                    on_chunk: Callable[[int, float | None], None] | None = None) -> ImatrixResult:
    """compute_imatrix: every chunk of n_ctx tokens from an empty cache, all positions' logits,
    the collector watching the model's matmuls. `n_batch` tokens go in one call (llama_decode);
    the model's own micro-batch is llama.cpp's n_ubatch."""
    from . import perplexity as ppl

    tokens = np.asarray(tokens, np.int64)
    if skip_chunks > 0:
        if (skip_chunks + 2) * n_ctx >= tokens.shape[0]:
            raise LlamacliError(f"there will be not enough tokens left after removing {skip_chunks} chunks")
        tokens = tokens[skip_chunks * n_ctx:]
    if tokens.shape[0] < 2 * n_ctx:
        raise LlamacliError(f"you need at least {2 * n_ctx} tokens for a context of {n_ctx} tokens; "
                            f"the text tokenizes to only {tokens.shape[0]} tokens")
    n_chunk_max = tokens.shape[0] // n_ctx
    n_chunk = n_chunk_max if max_chunks < 0 else min(max_chunks, n_chunk_max)
    if model.state.n_ctx < n_ctx:
        raise LlamacliError(f"the model was loaded with a context of {model.state.n_ctx} < {n_ctx}")
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    running: list[float] = []
    nb = min(n_batch, n_ctx)  # n_batch >= n_ctx: whole chunks (several sequences a call in llama.cpp)
    prev, model.observe = model.observe, collector.observe
    try:
        for i in range(n_chunk):
            chunk = tokens[i * n_ctx:(i + 1) * n_ctx].copy()
            if bos is not None:
                chunk[0] = bos
            model.state.reset()
            parts = []
            for s in range(0, n_ctx, nb):
                lg = model.eval(chunk[s:s + nb], want="all")
                if compute_ppl:
                    parts.append(lg[max(0, first - s):])  # only the second half is scored
            r = None
            if compute_ppl:
                logits = np.concatenate(parts) if len(parts) > 1 else parts[0]
                v = ppl.nll_rows(logits[:n_ctx - 1 - first], tokens[i * n_ctx + first + 1:(i + 1) * n_ctx])
                nll += float(v.sum())
                nll2 += float((v * v).sum())
                count += v.shape[0]
                r = math.exp(nll / count)
                running.append(r)
            if on_chunk is not None:
                on_chunk(i + 1, r)
    finally:
        model.observe = prev
    p = e = None
    if compute_ppl:
        p, e = ppl.ppl_and_error(nll, nll2, count)
    return ImatrixResult(n_chunk, n_ctx, int(tokens.shape[0]), running, p, e)


# ---------------------------------------------------------------------------------------------
# --show-statistics


def _f32_sum(a: np.ndarray) -> np.float32:
    """std::accumulate in float: left to right."""
    return np.cumsum(a, dtype=np.float32)[-1] if a.size else np.float32(0)


def _split_name(name: str) -> tuple[str, str]:
    """process_tensor_name: (layer, short tensor name), "-" for no layer."""
    parts = name.split(".")
    layer = tensor = ""
    for i, p in enumerate(parts):
        if p == "blk" and i + 1 < len(parts):
            layer = parts[i + 1]
            break
    for i, p in enumerate(parts):
        if p == "weight" and i > 0:
            tensor = parts[i - 1]
            break
    return layer or "-", tensor or name


@dataclass
class TensorStats:
    tensor: str
    values: np.ndarray
    total: float
    mean: float
    max: float
    min: float
    elements: int
    stddev: float
    active: float
    entropy: float
    zd: float
    cossim: float = 0.0


def tensor_statistics(name: str, e: Stats, log: Callable[[str], None]) -> TensorStats | None:
    """compute_statistics, in float32 as llama-imatrix computes them."""
    if e.n_mat == 0:
        log(f"compute_statistics: there are no activations for tensor {name}. The imatrix may be suboptimal")
        return None
    if e.values.size % e.n_mat:
        log(f"compute_statistics: activation size mismatch for tensor {name} ({e.n_mat} vs {e.values.size})")
        return None
    row = e.values.size // e.n_mat
    acts = [e.values[i * row:(i + 1) * row] / np.float32(e.counts[i]) for i in range(e.n_mat) if e.counts[i]]
    if not acts:
        log(f"compute_statistics: all counts are zero for tensor {name}, skipping statistics computation")
        return None
    a = np.concatenate(acts).astype(np.float32)
    n = np.float32(a.size)
    total = _f32_sum(a)
    mean = np.float32(total / n)
    sq = _f32_sum(a * a)
    var = np.float32(np.float32(sq / n) - mean * mean)
    dev = np.float32(math.sqrt(max(0.0, float(var))))
    inactive = int((np.abs(a) <= np.float32(1e-5)).sum())
    active = np.float32(1) - np.float32(inactive) / n
    entropy = np.float32(0)
    if total > 0:
        p = a / total
        p = p[p > 0]
        entropy = -_f32_sum(p * np.log2(p).astype(np.float32))
    z = int(((a - mean) / dev > 1).sum()) if dev > 0 else 0
    return TensorStats(name, e.values, float(total), float(mean), float(a.max()), float(a.min()), a.size,
                       float(dev), float(active), float(entropy), float(np.float32(z) / np.float32(a.size)))


def _cossim(ts: list[TensorStats]) -> None:
    """compute_cossim: each tensor against the same tensor one block down (raw sums)."""
    by_name = {t.tensor: t for t in ts}
    pat = re.compile(r"blk\.(\d+)\.")
    for t in ts:
        m = pat.search(t.tensor)
        if not m:
            t.cossim = 0.0
            continue
        prev = by_name.get(t.tensor[:m.start(1)] + str(int(m.group(1)) - 1) + t.tensor[m.end(1):])
        if prev is not None:
            dp = _f32_sum(t.values * prev.values)
            cm = np.float32(math.sqrt(_f32_sum(t.values * t.values)))
            pm = np.float32(math.sqrt(_f32_sum(prev.values * prev.values)))
            t.cossim = float(np.float32(dp / np.float32(cm * pm)))


def show_statistics(path: str | os.PathLike, chunk_size: int = DEFAULT_CTX,
                    log: Callable[[str], None] | None = None) -> list[str]:
    """llama-imatrix --show-statistics: the lines of its two tables for one imatrix file."""
    log = log or (lambda line: None)
    c = Collector(chunk_size=chunk_size)
    c.merge(load_imatrix(path), str(path))
    ts = [t for t in (tensor_statistics(n, s, log) for n, s in c.stats.items()) if t is not None]
    if not ts:
        raise LlamacliError(f"cannot compute statistics for {path}")
    _cossim(ts)
    ts.sort(key=lambda t: (_split_name(t.tensor)[1].encode(), -t.total))
    out = [f"Computing statistics for {path} ({len(ts)} tensors)", "",
           "\t".join((" Layer", "       Tensor", "          Σ(Act²)", "  Min", "            Max", "           μ",
                      "   σ", " % Active", "N", "   Entropy", "E (norm)", "ZD", "  CosSim")),
           "=" * 169]
    ws: dict[int, list] = {}
    for t in ts:
        layer, name = _split_name(t.tensor)
        try:
            blk = int(layer)
        except ValueError:
            blk = -1
        en = 100.0 * (t.entropy / math.log2(t.elements)) if t.elements > 0 else 0.0
        out.append(f"{layer:>5}\t{name:<20}\t{t.total:10.2f}\t{t.min:8.4f}\t{t.max:11.4f}\t{t.mean:6.2f}\t"
                   f"{t.stddev:6.2f}\t{t.active * 100.0:8.2f}%\t{t.elements:6d}\t{t.entropy:10.4f}\t"
                   f"{en:6.2f}%\t{100.0 * t.zd:10.2f}%\t{t.cossim:8.4f}")
        w = ws.setdefault(blk, [np.float32(0), np.float32(0), np.float32(0), 0])
        n = np.float32(t.elements)
        w[0] += n * np.float32(t.total)
        w[1] += n * np.float32(t.zd)
        w[2] += n * np.float32(t.cossim)
        w[3] += t.elements
    layers = sum(1 for b in ws if b >= 0)
    out += ["", f"Computing weighted average statistics per layer ({layers} layers)", "",
            "\t".join(("  Layer", "     μΣ(Act²)", "      μZD", "μCosSim")), "=" * 48]
    for blk in sorted(ws):
        b, zd, cs, n = ws[blk]
        if n == 0 or blk < 0:
            continue
        n = np.float32(n)
        out.append(f"{blk:5d}\t{float(b / n):14.2f}\t{100.0 * float(zd / n):10.4f}%\t{float(cs / n):6.4f}")
    return out


# ---------------------------------------------------------------------------------------------
# for llama-quantize


def importance_weights(loaded: Loaded) -> dict[str, np.ndarray]:
    """quantize.cpp load_imatrix: each entry as the per-column mean of x*x (GGUF: sums / count
    per matrix, ones where a matrix saw nothing; legacy: sums / ncall), float32."""
    out = {}
    for name, e in loaded.entries.items():
        v = e.values.astype(np.float32)
        if not loaded.is_legacy:
            ne0 = v.size // e.n_mat
            r = np.empty_like(v)
            for j in range(e.n_mat):
                c = np.float32(e.counts[j])
                r[j * ne0:(j + 1) * ne0] = v[j * ne0:(j + 1) * ne0] / c if c > 0 else np.float32(1)
            out[name] = r
        else:
            ncall = int(e.counts[0]) if e.n_mat else 0
            out[name] = v / np.float32(ncall) if ncall > 0 else v.copy()
    return out
