"""Perplexity and KL divergence over a text, as llama.cpp's llama-perplexity computes them.

Mirrors tools/perplexity/perplexity.cpp (`perplexity` and `kl_divergence`):

* the text is tokenized once, BOS added as the vocabulary asks (``common_tokenize(..., true)``),
  one trailing newline of the file dropped (``-f`` in common/arg.cpp);
* it is cut into ``n_chunk = n_tokens // n_ctx`` chunks of ``n_ctx`` tokens (``--chunks``
  caps the count); each chunk is evaluated from an empty KV cache, its first token replaced
  by BOS when the vocabulary adds one;
* only the second half is scored: the logits at positions ``first = n_ctx // 2`` ..
  ``n_ctx - 2`` predict tokens ``first + 1`` .. ``n_ctx - 1``, so ``n_ctx - 1 - first``
  tokens per chunk;
* ``PPL = exp(mean nll)``; its error is ``PPL * sqrt(var(nll) / (count - 1))``, the
  running estimate after every chunk is ``exp(nll / count)`` so far.

The saved log-probabilities use llama.cpp's own compact scheme (`log_softmax` with a
``uint16_t *``): per position a float32 ``scale`` and ``min_log_prob`` and one uint16 per
vocabulary entry, ``log p = scale * q + min_log_prob``, covering the 16 nats below the top
logit (everything lower is stored as 0). They live in an ``.npz`` (see `LogitsWriter`), and
`kl_divergence` reads them back chunk by chunk, accumulating the sums of llama.cpp's
`kl_divergence_result`.

The model is evaluated here with our engine, whose logits do not depend on batching; the
first half of each chunk is run without computing the output head except for its last row.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import LlamacliError

# llama.cpp's log_softmax keeps the 16 nats below the top logit (min_logit = max(min, max - 16))
LOG_PROB_RANGE = 16.0
# and the KL sum skips base log-probabilities at or below this
KLD_LOG_PROB_MIN = -16.0
UINT16_LEVELS = 65535.0
FORMAT_TAG = "llamacli-logprobs-1"
ROWS_PER_BLOCK = 32  # positions processed together: bounds the (rows, n_vocab) temporaries


# ---------------------------------------------------------------------------------------------
# input: text -> tokens -> chunks


def read_text(path: str | os.PathLike) -> str:
    """The file as llama.cpp's `-f` reads it: the whole text, one trailing newline dropped."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise LlamacliError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise LlamacliError(f"{p}: is a directory") from None
    except OSError as e:
        raise LlamacliError(f"{p}: cannot be read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise LlamacliError(f"{p}: not UTF-8 text (byte {e.start})") from None
    return text[:-1] if text.endswith("\n") else text


def n_scored_per_chunk(n_ctx: int) -> int:
    return n_ctx - 1 - n_ctx // 2


def check_ctx(n_ctx: int) -> None:
    if n_ctx < 4:
        raise LlamacliError(f"-c must be at least 4 for perplexity, got {n_ctx}")


def count_chunks(n_tokens: int, n_ctx: int, max_chunks: int = -1, source: str = "the text") -> int:
    """llama.cpp's chunk count; refuses a text of fewer than 2 * n_ctx tokens as it does."""
    if n_tokens < 2 * n_ctx:
        raise LlamacliError(f"{source} tokenizes to only {n_tokens} tokens; perplexity with a context "
                            f"of {n_ctx} needs at least {2 * n_ctx}")
    if max_chunks == 0 or max_chunks < -1:
        raise LlamacliError(f"--chunks must be positive or -1 (all), got {max_chunks}")
    n_max = n_tokens // n_ctx
    return n_max if max_chunks < 0 else min(max_chunks, n_max)


def chunk_logits(model, chunk: np.ndarray, bos: int | None) -> np.ndarray:
    """Logits (n_ctx - 1 - n_ctx//2, n_vocab) of positions n_ctx//2 .. n_ctx - 2 of one chunk,
    from an empty cache, its first token replaced by `bos` (llama.cpp does so even when the
    chunk starts with another token). The whole chunk goes through, in micro-batches of
    n_batch with logits from n_ctx//2 on, as llama-perplexity's batch: so each row takes the
    batched kernels it takes there."""
    n_ctx = chunk.shape[0]
    first = n_ctx // 2
    inp = chunk.astype(np.int64)  # a copy: the caller's tokens stay as they are
    if bos is not None:
        inp[0] = bos
    model.state.reset()
    return model.eval_rows(inp, first)[:n_ctx - 1 - first]  # (n_scored, n_vocab)


# ---------------------------------------------------------------------------------------------
# per-position statistics, vectorised over rows (llama.cpp: log_softmax, three overloads)


def _softmax_parts(logits: np.ndarray):
    """Row max, its index and log(sum(exp(l - max))) summed in float64 as llama.cpp does."""
    imax = np.argmax(logits, axis=1)  # first maximum, as the `>` scan
    lmax = logits[np.arange(logits.shape[0]), imax]  # (R,) float32
    e = np.exp(logits - lmax[:, None])  # (R, V) float32, expf
    sum_exp = e.sum(axis=1, dtype=np.float64)  # (R,)
    return imax, lmax, np.log(sum_exp)


def nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target) per row, float64 (log_softmax(n_vocab, logits, tok))."""
    out = np.empty(logits.shape[0], np.float64)
    for r0 in range(0, logits.shape[0], ROWS_PER_BLOCK):
        lg = logits[r0:r0 + ROWS_PER_BLOCK]
        _, lmax, lse = _softmax_parts(lg)
        lt = lg[np.arange(lg.shape[0]), targets[r0:r0 + ROWS_PER_BLOCK]]
        out[r0:r0 + lg.shape[0]] = -((lt - lmax).astype(np.float64) - lse)  # float, then double
    return out


@dataclass
class QuantLogProbs:
    """llama.cpp's compact log-probabilities of one chunk: log p = scale * q + min_log_prob."""

    q: np.ndarray  # (n_scored, n_vocab) uint16
    scale: np.ndarray  # (n_scored,) float32
    min_log_prob: np.ndarray  # (n_scored,) float32

    def log_probs(self, rows: slice = slice(None)) -> np.ndarray:
        return self.scale[rows, None] * self.q[rows].astype(np.float32) + self.min_log_prob[rows, None]


def quantize_log_probs(logits: np.ndarray) -> QuantLogProbs:
    """log_softmax(n_vocab, logits, uint16_t * log_prob, tok): the 16 nats below the top
    logit in 65535 steps, rounded to nearest even (nearest_int)."""
    R, V = logits.shape
    q = np.empty((R, V), np.uint16)
    scale = np.empty(R, np.float32)
    min_lp = np.empty(R, np.float32)
    for r0 in range(0, R, ROWS_PER_BLOCK):
        lg = logits[r0:r0 + ROWS_PER_BLOCK]
        _, lmax, lse = _softmax_parts(lg)
        lmin = np.maximum(lg.min(axis=1), lmax - np.float32(LOG_PROB_RANGE))  # (r,) float32
        lse32 = lse.astype(np.float32)
        min_lp[r0:r0 + lg.shape[0]] = lmin - lmax - lse32
        sc = (lmax - lmin) / np.float32(UINT16_LEVELS)
        scale[r0:r0 + lg.shape[0]] = sc
        with np.errstate(divide="ignore"):
            inv = np.where(sc != 0, np.float32(1) / sc, np.float32(0)).astype(np.float32)
        v = np.rint(inv[:, None] * (lg - lmin[:, None]))
        q[r0:r0 + lg.shape[0]] = np.where(lg > lmin[:, None], v, 0).astype(np.uint16)
    return QuantLogProbs(q, scale, min_lp)


@dataclass
class KLSums:
    """kl_divergence_result: running sums over every scored position."""

    sum_nll: float = 0.0
    sum_nll2: float = 0.0
    sum_nll_base: float = 0.0
    sum_nll_base2: float = 0.0
    sum_nll_nll_base: float = 0.0
    sum_kld: float = 0.0
    sum_kld2: float = 0.0
    sum_p_diff: float = 0.0
    sum_p_diff2: float = 0.0
    sum_p_diff4: float = 0.0
    max_p_diff: float = 0.0
    n_same_top: int = 0
    count: int = 0
    kld_values: list = field(default_factory=list)  # one float32 array per chunk
    p_diff_values: list = field(default_factory=list)


def kl_rows(logits: np.ndarray, base: QuantLogProbs, targets: np.ndarray, acc: KLSums) -> None:
    """log_softmax(n_vocab, logits, base_log_prob, tok, kld) for every row of one chunk."""
    R = logits.shape[0]
    kld_out = np.empty(R, np.float32)
    pd_out = np.empty(R, np.float32)
    for r0 in range(0, R, ROWS_PER_BLOCK):
        rows = slice(r0, min(R, r0 + ROWS_PER_BLOCK))
        lg = logits[rows]
        r = np.arange(lg.shape[0])
        tg = targets[rows]
        imax, lmax, lse = _softmax_parts(lg)
        lse32 = lse.astype(np.float32)
        nll = (lmax + lse32 - lg[r, tg]).astype(np.float32)  # float32, as in llama.cpp
        lp_base = base.log_probs(rows)  # (r, V) float32
        nll_base = -lp_base[r, tg]
        acc.sum_nll += float(np.sum(nll, dtype=np.float64))
        acc.sum_nll2 += float(np.sum(nll.astype(np.float64) ** 2))
        acc.sum_nll_base += float(np.sum(nll_base, dtype=np.float64))
        acc.sum_nll_base2 += float(np.sum(nll_base.astype(np.float64) ** 2))
        acc.sum_nll_nll_base += float(np.sum(nll.astype(np.float64) * nll_base))
        # sum over the base's support of p_base * (log p_base - log p)
        log_norm = (lmax + lse32)[:, None]  # log p = logit - log_norm
        terms = np.exp(lp_base) * (lp_base - lg + log_norm)
        kld = np.where(lp_base > np.float32(KLD_LOG_PROB_MIN), terms, 0).sum(axis=1, dtype=np.float64)
        acc.sum_kld += float(kld.sum())
        acc.sum_kld2 += float((kld * kld).sum())
        acc.count += lg.shape[0]
        acc.n_same_top += int(np.count_nonzero(imax == np.argmax(lp_base, axis=1)))
        p_diff = np.exp(-nll) - np.exp(-nll_base)  # float32
        pd2 = p_diff.astype(np.float64) ** 2
        acc.sum_p_diff += float(p_diff.sum(dtype=np.float64))
        acc.sum_p_diff2 += float(pd2.sum())
        acc.sum_p_diff4 += float((pd2 * pd2).sum())
        acc.max_p_diff = max(acc.max_p_diff, float(np.abs(p_diff).max()))
        kld_out[rows] = kld
        pd_out[rows] = p_diff
    acc.kld_values.append(kld_out)
    acc.p_diff_values.append(pd_out)


# ---------------------------------------------------------------------------------------------
# the saved log-probabilities: an .npz written as it goes, read back chunk by chunk


class LogitsWriter:
    """Writes the base log-probabilities as an .npz, atomically (a temporary file beside the
    target, renamed at the end). Keys:

    ``format`` the tag `FORMAT_TAG`; ``n_ctx``, ``n_vocab`` int32 scalars;
    ``tokens`` int32 (n_chunk, n_ctx), the text's tokens as chunked (before the BOS substitution);
    ``log_prob_q`` uint16 (n_chunk, n_scored, n_vocab) with ``n_scored = n_ctx - 1 - n_ctx // 2``;
    ``scale``, ``min_log_prob`` float32 (n_chunk, n_scored): log p = scale * q + min_log_prob
    for the positions n_ctx//2 .. n_ctx - 2 of each chunk (predicting the next token).
    """

    def __init__(self, path: str | os.PathLike, tokens: np.ndarray, n_vocab: int):
        self.path = Path(path)
        self.tokens = tokens  # (n_chunk, n_ctx)
        n_chunk, n_ctx = tokens.shape
        self.n_vocab = n_vocab
        self.n_scored = n_scored_per_chunk(n_ctx)
        self.scale = np.zeros((n_chunk, self.n_scored), np.float32)
        self.min_log_prob = np.zeros((n_chunk, self.n_scored), np.float32)
        self.n_written = 0
        parent = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent)
        except OSError as e:
            raise LlamacliError(f"{self.path}: cannot write here ({e.strerror})") from None
        os.close(fd)
        self.tmp = Path(tmp)
        self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        self.stream = self.zf.open("log_prob_q.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<u2")), "fortran_order": False,
                  "shape": (n_chunk, self.n_scored, n_vocab)}
        np.lib.format.write_array_header_2_0(self.stream, header)

    def add(self, lp: QuantLogProbs) -> None:
        assert lp.q.shape == (self.n_scored, self.n_vocab), lp.q.shape
        self.stream.write(np.ascontiguousarray(lp.q, dtype="<u2").tobytes())
        self.scale[self.n_written] = lp.scale
        self.min_log_prob[self.n_written] = lp.min_log_prob
        self.n_written += 1

    def _array(self, name: str, a: np.ndarray) -> None:
        with self.zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)

    def close(self) -> Path:
        assert self.n_written == self.tokens.shape[0], (self.n_written, self.tokens.shape)
        self.stream.close()
        self._array("format", np.array(FORMAT_TAG))
        self._array("n_ctx", np.int32(self.tokens.shape[1]))
        self._array("n_vocab", np.int32(self.n_vocab))
        self._array("tokens", self.tokens.astype(np.int32))
        self._array("scale", self.scale)
        self._array("min_log_prob", self.min_log_prob)
        self.zf.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp made it private; give it a normal file's mode
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.stream.close()
            self.zf.close()
        except Exception:  # noqa: BLE001 - the partial file goes away either way
            pass
        self.tmp.unlink(missing_ok=True)


class SavedLogits:
    """The base log-probabilities written by `LogitsWriter`, validated; `chunks()` streams them."""

    KEYS = ("format", "n_ctx", "n_vocab", "tokens", "log_prob_q", "scale", "min_log_prob")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.zf = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise LlamacliError(f"{self.path}: no such file") from None
        except (zipfile.BadZipFile, IsADirectoryError, OSError):
            raise LlamacliError(f"{self.path}: not an .npz of saved log-probabilities "
                                f"(write one with --save-logits)") from None
        names = set(self.zf.namelist())
        missing = [k for k in self.KEYS if f"{k}.npy" not in names]
        if missing:
            raise LlamacliError(f"{self.path}: not an .npz of saved log-probabilities "
                                f"(missing {', '.join(missing)})")
        try:
            tag = str(self._small("format"))
            self.n_ctx = int(self._small("n_ctx"))
            self.n_vocab = int(self._small("n_vocab"))
            self.tokens = self._small("tokens")
            self.scale = self._small("scale")
            self.min_log_prob = self._small("min_log_prob")
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise LlamacliError(f"{self.path}: damaged ({e})") from None
        if tag != FORMAT_TAG:
            raise LlamacliError(f"{self.path}: format '{tag}', expected '{FORMAT_TAG}'")
        self.n_chunk = self.tokens.shape[0] if self.tokens.ndim == 2 else -1
        self.n_scored = n_scored_per_chunk(self.n_ctx)
        want = (self.n_chunk, self.n_scored)
        if (self.tokens.shape != (self.n_chunk, self.n_ctx) or self.n_chunk < 1
                or self.scale.shape != want or self.min_log_prob.shape != want):
            raise LlamacliError(f"{self.path}: inconsistent shapes (tokens {self.tokens.shape}, "
                                f"scale {self.scale.shape}, n_ctx {self.n_ctx})")

    def _small(self, name: str) -> np.ndarray:
        with self.zf.open(f"{name}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def chunks(self, n_chunk: int) -> Iterator[QuantLogProbs]:
        with self.zf.open("log_prob_q.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            if shape != (self.n_chunk, self.n_scored, self.n_vocab) or fortran or dtype != np.dtype("<u2"):
                raise LlamacliError(f"{self.path}: log_prob_q has shape {shape} {dtype}, expected "
                                    f"{(self.n_chunk, self.n_scored, self.n_vocab)} uint16")
            size = self.n_scored * self.n_vocab * 2
            for c in range(n_chunk):
                raw = f.read(size)
                if len(raw) != size:
                    raise LlamacliError(f"{self.path}: truncated at chunk {c + 1}")
                q = np.frombuffer(raw, "<u2").reshape(self.n_scored, self.n_vocab)
                yield QuantLogProbs(q, self.scale[c], self.min_log_prob[c])

    def close(self) -> None:
        self.zf.close()


# ---------------------------------------------------------------------------------------------
# the two runs


@dataclass
class PerplexityResult:
    ppl: float
    ppl_stderr: float
    n_chunks: int
    n_ctx: int
    n_tokens: int  # tokens of the whole text (BOS included)
    n_scored: int  # tokens scored (n_chunks * (n_ctx - 1 - n_ctx // 2))
    chunk_ppl: list[float]  # running estimate after each chunk, as llama-perplexity prints it
    seconds: float  # evaluation and scoring time
    logits_file: str | None = None

    def to_json(self) -> dict:
        return {"ppl": self.ppl, "ppl_stderr": self.ppl_stderr, "n_chunks": self.n_chunks,
                "n_ctx": self.n_ctx, "n_tokens": self.n_tokens, "n_scored": self.n_scored,
                "chunk_ppl": self.chunk_ppl, "seconds": self.seconds, "logits_file": self.logits_file}


def ppl_and_error(nll: float, nll2: float, count: int) -> tuple[float, float]:
    """exp(mean) and its standard error, as the end of llama.cpp's `perplexity`."""
    mean = nll / count
    ppl = math.exp(mean)
    var = nll2 / count - mean * mean
    if var <= 0 or count < 2:
        return ppl, float("nan")  # llama.cpp: "Unexpected negative standard deviation"
    return ppl, math.sqrt(var / (count - 1)) * ppl


def tokenize_text(tokenizer, text: str) -> np.ndarray:
    """common_tokenize(ctx, text, add_special=true, parse_special=false)."""
    return np.asarray(tokenizer.encode(text, add_special=True, parse_special=False), np.int64)


def bos_of(tokenizer) -> int | None:
    """The token every chunk starts with, or None when the vocabulary adds no BOS."""
    return tokenizer.bos_id if tokenizer.add_bos else None


def perplexity(model, tokens: np.ndarray, n_ctx: int, bos: int | None, max_chunks: int = -1,
               save_logits: str | os.PathLike | None = None,
               on_chunk: Callable[[int, float], None] | None = None) -> PerplexityResult:
    """llama.cpp's `perplexity` over `tokens` (`tokenize_text`) in chunks of `n_ctx` (the
    model's context must hold n_ctx), each starting with `bos` if given (`bos_of`).
    `on_chunk(i, running_ppl)` is called after chunk i (1-based)."""
    check_ctx(n_ctx)
    if model.state.n_ctx < n_ctx:
        raise LlamacliError(f"the model was loaded with a context of {model.state.n_ctx} < {n_ctx}")
    tokens = np.asarray(tokens, np.int64)
    n_chunk = count_chunks(tokens.shape[0], n_ctx, max_chunks)
    first = n_ctx // 2
    chunks = tokens[:n_chunk * n_ctx].reshape(n_chunk, n_ctx)
    writer = LogitsWriter(save_logits, chunks, model.cfg.n_vocab) if save_logits else None
    nll = nll2 = 0.0
    count = 0
    running: list[float] = []
    t0 = time.perf_counter()
    try:
        for i, chunk in enumerate(chunks):
            logits = chunk_logits(model, chunk, bos)
            v = nll_rows(logits, chunk[first + 1:])
            nll += float(v.sum())
            nll2 += float((v * v).sum())
            count += v.shape[0]
            if writer is not None:
                writer.add(quantize_log_probs(logits))
            running.append(math.exp(nll / count))
            if on_chunk is not None:
                on_chunk(i + 1, running[-1])
        saved = str(writer.close()) if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    ppl, err = ppl_and_error(nll, nll2, count)
    return PerplexityResult(ppl, err, n_chunk, n_ctx, int(tokens.shape[0]), count, running,
                            time.perf_counter() - t0, saved)


def _mean_and_uncertainty(s: float, s2: float, count: int) -> tuple[float, float]:
    if count < 1:
        return 0.0, 0.0
    f = s / count
    df = s2 / count - f * f
    return f, (math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0)


def _covariance(sa: float, sb: float, sab: float, count: int) -> float:
    if count < 10:
        return 0.0
    return (sab / count - (sa / count) * (sb / count)) / (count - 1)


def _percentile(values: np.ndarray, fraction: float) -> float:
    """llama.cpp's linear interpolation between the sorted values."""
    if fraction <= 0:
        return float(values[0])
    if fraction >= 1:
        return float(values[-1])
    p = np.float32(fraction) * np.float32(values.shape[0] - 1)
    ip = int(p)
    p = float(p) - ip
    return (1 - p) * float(values[ip]) + p * float(values[min(ip + 1, values.shape[0] - 1)])


def _median(values: np.ndarray) -> float:
    n = values.shape[0]
    return float(0.5 * (values[n // 2] + values[n // 2 - 1])) if n % 2 == 0 else float(values[n // 2])


@dataclass
class KLResult:
    """What `llama-perplexity --kl-divergence` prints, as numbers."""

    sums: KLSums
    n_chunks: int
    n_ctx: int
    seconds: float

    def stats(self) -> dict:
        k = self.sums
        n = k.count
        lp, lp_unc = _mean_and_uncertainty(k.sum_nll, k.sum_nll2, n)
        lb, lb_unc = _mean_and_uncertainty(k.sum_nll_base, k.sum_nll_base2, n)
        cov = _covariance(k.sum_nll, k.sum_nll_base, k.sum_nll_nll_base, n)
        ppl, ppl_base = math.exp(lp), math.exp(lb)
        ppl_unc, ppl_base_unc = ppl * lp_unc, ppl_base * lb_unc
        ratio_unc = math.sqrt(max(0.0, lp_unc ** 2 + lb_unc ** 2 - 2 * cov))
        kld, kld_unc = _mean_and_uncertainty(k.sum_kld, k.sum_kld2, n)
        kv = np.sort(np.concatenate(k.kld_values))
        pv = np.sort(np.concatenate(k.p_diff_values))
        pd, pd_unc = _mean_and_uncertainty(k.sum_p_diff, k.sum_p_diff2, n)
        mse, mse_unc = _mean_and_uncertainty(k.sum_p_diff2, k.sum_p_diff4, n)
        rms = math.sqrt(mse)
        top = k.n_same_top / n
        out = {
            "n_chunks": self.n_chunks, "n_ctx": self.n_ctx, "n_scored": n,
            "ppl": ppl, "ppl_stderr": ppl_unc, "ppl_base": ppl_base, "ppl_base_stderr": ppl_base_unc,
            "ppl_cor": cov / (lp_unc * lb_unc) if lp_unc * lb_unc > 0 else float("nan"),
            "ln_ppl_ratio": lp - lb, "ln_ppl_ratio_stderr": ratio_unc,
            "ppl_ratio": math.exp(lp - lb), "ppl_ratio_stderr": math.exp(lp - lb) * ratio_unc,
            "ppl_diff": ppl - ppl_base,
            "ppl_diff_stderr": math.sqrt(max(0.0, ppl_unc ** 2 + ppl_base_unc ** 2 - 2 * ppl * ppl_base * cov)),
            "kld_mean": kld, "kld_mean_stderr": kld_unc, "kld_max": float(kv[-1]),
            "kld_median": _median(kv), "kld_min": float(kv[0]),
            "kld_percentiles": {f"{q:g}": _percentile(kv, q / 100) for q in (99.9, 99.0, 95.0, 90.0, 10.0, 5.0, 1.0, 0.1)},
            "dp_mean": pd, "dp_mean_stderr": pd_unc, "dp_max": float(pv[-1]), "dp_median": _median(pv),
            "dp_min": float(pv[0]),
            "dp_percentiles": {f"{q:g}": _percentile(pv, q / 100) for q in (99.9, 99.0, 95.0, 90.0, 75.0, 25.0, 10.0, 5.0, 1.0, 0.1)},
            "dp_rms": rms, "dp_rms_stderr": 0.5 / rms * mse_unc if rms > 0 else 0.0,
            "same_top": top, "same_top_stderr": math.sqrt(top * (1 - top) / (n - 1)) if n > 1 else 0.0,
            "seconds": self.seconds,
        }
        return out

    def chunk_line(self) -> str:
        """One row of llama.cpp's per-chunk table, from the sums so far."""
        k = self.sums
        n = k.count
        lp, lp_unc = _mean_and_uncertainty(k.sum_nll, k.sum_nll2, n)
        lb, lb_unc = _mean_and_uncertainty(k.sum_nll_base, k.sum_nll_base2, n)
        cov = _covariance(k.sum_nll, k.sum_nll_base, k.sum_nll_nll_base, n)
        ratio_unc = math.sqrt(max(0.0, lp_unc ** 2 + lb_unc ** 2 - 2 * cov))
        kld, kld_unc = _mean_and_uncertainty(k.sum_kld, k.sum_kld2, n)
        mse, mse_unc = _mean_and_uncertainty(k.sum_p_diff2, k.sum_p_diff4, n)
        rms = math.sqrt(mse)
        rms_unc = 0.5 / rms * mse_unc if rms > 0 else 0.0
        top = k.n_same_top / n
        top_unc = math.sqrt(top * (1 - top) / (n - 1)) if n > 1 else 0.0
        ppl = math.exp(lp)
        return (f"{self.n_chunks:4d}    {ppl:9.4f} ± {ppl * lp_unc:9.4f}    {lp - lb:10.5f} ± {ratio_unc:10.5f}"
                f"    {kld:10.5f} ± {kld_unc:10.5f}    {100 * rms:6.3f} ± {100 * rms_unc:6.3f} %"
                f"    {100 * top:6.3f} ± {100 * top_unc:6.3f} %")


def kl_divergence(model, base: SavedLogits, bos: int | None, max_chunks: int = -1,
                  on_chunk: Callable[[int, KLResult], None] | None = None) -> KLResult:
    """llama.cpp's `kl_divergence`: evaluate the base's own tokens with this model and compare
    with the saved log-probabilities. `on_chunk(i, partial)` after chunk i (1-based)."""
    n_ctx = base.n_ctx
    if model.cfg.n_vocab != base.n_vocab:
        raise LlamacliError(f"{base.path}: saved with a vocabulary of {base.n_vocab} tokens, "
                            f"this model has {model.cfg.n_vocab}")
    if model.state.n_ctx < n_ctx:
        raise LlamacliError(f"{base.path} was computed with a context of {n_ctx}; "
                            f"the model was loaded with {model.state.n_ctx}")
    if max_chunks == 0 or max_chunks < -1:
        raise LlamacliError(f"--chunks must be positive or -1 (all), got {max_chunks}")
    if base.tokens.max() >= model.cfg.n_vocab or base.tokens.min() < 0:
        raise LlamacliError(f"{base.path}: token ids out of this model's range")
    n_chunk = base.n_chunk if max_chunks < 0 else min(max_chunks, base.n_chunk)
    first = n_ctx // 2
    res = KLResult(KLSums(), 0, n_ctx, 0.0)
    t0 = time.perf_counter()
    for i, lp in enumerate(base.chunks(n_chunk)):
        chunk = base.tokens[i].astype(np.int64)
        logits = chunk_logits(model, chunk, bos)
        kl_rows(logits, lp, chunk[first + 1:], res.sums)
        res.n_chunks = i + 1
        res.seconds = time.perf_counter() - t0
        if on_chunk is not None:
            on_chunk(i + 1, res)
    return res
