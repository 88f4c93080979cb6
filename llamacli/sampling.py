"""llama.cpp's default sampler chain, seeded the way llama.cpp seeds it.

Chain (common/common.h, src/llama-sampler.cpp): penalties -> top-k -> typical -> top-p ->
min-p -> temperature -> dist. The draw uses std::mt19937 seeded with the seed (NumPy's
MT19937 with its legacy seeding is the same generator) and libstdc++'s
``uniform_real_distribution<double>``, which builds a double from two 32-bit draws, so the
same seed picks the same token as llama.cpp given the same logits.

With a grammar (llamacli.grammar), sampling is common_sampler_sample's (common/sampling.cpp,
grammar_first = false): the chain picks from the raw logits, then the grammar checks that one
token; only if it is rejected does the grammar mask every candidate (-inf) and the chain run
again from the same logits, which draws the RNG a second time, as llama.cpp does.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: pick one from the clock


@dataclass(frozen=True)
class SamplerParams:
    temp: float = 0.80
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.00
    repeat_last_n: int = 64
    repeat_penalty: float = 1.00
    frequency_penalty: float = 0.00
    presence_penalty: float = 0.00
    min_keep: int = 0
    seed: int = DEFAULT_SEED


class MT19937:
    """std::mt19937 outputs, 624 at a time from NumPy's generator."""

    def __init__(self, seed: int):
        self._bg = np.random.MT19937()
        self._bg._legacy_seeding(seed & 0xFFFFFFFF)  # init_genrand(seed), as std::mt19937(seed)
        self._buf = np.empty(0, np.uint64)
        self._i = 0

    def next_u32(self) -> int:
        if self._i >= self._buf.shape[0]:
            self._buf = self._bg.random_raw(624)
            self._i = 0
        v = int(self._buf[self._i])
        self._i += 1
        return v

    def uniform(self) -> float:
        """libstdc++ generate_canonical<double, 53>: (a + b * 2**32) / 2**64, kept below 1."""
        a = self.next_u32()
        b = self.next_u32()
        r = (a + b * 4294967296.0) / 18446744073709551616.0
        return r if r < 1.0 else float(np.nextafter(1.0, 0.0))


class Sampler:
    def __init__(self, params: SamplerParams, n_vocab: int, grammar=None):
        self.p = params
        self.grammar = grammar  # a llamacli.grammar.GrammarState, or None
        seed = params.seed
        if seed == DEFAULT_SEED:
            seed = time.time_ns() & 0xFFFFFFFF
        self.seed = seed
        self.rng = MT19937(seed)
        self.history: deque[int] = deque(maxlen=max(params.repeat_last_n, 0) or None)
        self.counts: Counter[int] = Counter()
        self.n_vocab = n_vocab

    # -- history for the penalties ----------------------------------------------------------

    def accept(self, token: int, generated: bool = False) -> None:
        """common_sampler_accept: the grammar sees generated tokens only, the penalties all."""
        if generated and self.grammar is not None:
            self.grammar.accept_token(token)
        if self.p.repeat_last_n == 0:
            return
        if self.history.maxlen is not None and len(self.history) == self.history.maxlen:
            old = self.history[0]
            self.counts[old] -= 1
            if self.counts[old] == 0:
                del self.counts[old]
        self.history.append(token)
        self.counts[token] += 1

    def _penalties_active(self) -> bool:
        p = self.p
        return p.repeat_last_n != 0 and not (
            p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0)

    # -- the chain --------------------------------------------------------------------------

    def sample(self, logits: np.ndarray) -> int:
        if self.grammar is None:
            return self._chain(logits)
        # common_sampler_sample: sample first, then check only the pick against the grammar
        tok = self._chain(logits)
        if self.grammar.allows(tok):
            return tok
        # rejected: the grammar masks all candidates, then the whole chain runs again
        return self._chain(logits, grammar=self.grammar)

    def _chain(self, logits: np.ndarray, grammar=None) -> int:
        p = self.p
        lg = logits
        if self._penalties_active() and self.counts:
            lg = logits.astype(np.float32, copy=True)  # only when something is penalised
            for tok, cnt in self.counts.items():
                v = lg[tok]
                v = v * p.repeat_penalty if v <= 0 else v / p.repeat_penalty
                lg[tok] = v - np.float32(cnt * p.frequency_penalty + (cnt > 0) * p.presence_penalty)
        if grammar is not None:
            # the grammar runs before the chain in llama.cpp; a -inf logit stays -inf through
            # the penalties, so masking after them is the same
            lg = self._grammar_mask(lg, grammar)
        # top-k: sorted descending by logit (ties by id); a partition avoids sorting the vocabulary
        n = lg.shape[0]
        k = min(p.top_k if p.top_k > 0 else n, n)
        part = np.argpartition(lg, n - k)[n - k:] if k < n else np.arange(n)
        vals = lg[part].astype(np.float32)
        order = np.lexsort((part, -vals))
        ids, lg = part[order], vals[order]
        sorted_ = True
        if p.typical_p < 1.0:
            ids, lg = self._typical(ids, lg)
            sorted_ = False
        if p.top_p < 1.0:
            if not sorted_:
                o = np.lexsort((ids, -lg))
                ids, lg = ids[o], lg[o]
                sorted_ = True
            prob = _softmax32(lg)
            cum = np.cumsum(prob, dtype=np.float32)
            keep = len(lg)
            for i in range(len(lg)):
                if cum[i] >= np.float32(p.top_p) and i + 1 >= p.min_keep:
                    keep = i + 1
                    break
            ids, lg = ids[:keep], lg[:keep]
        if p.min_p > 0.0:
            m = np.float32(lg.max() + np.float32(np.log(np.float32(p.min_p))))
            sel = lg >= m
            if sel.sum() >= max(p.min_keep, 1):
                ids, lg = ids[sel], lg[sel]
        if p.temp <= 0.0:
            i = int(np.argmax(lg))  # first maximum, as the greedy temperature sampler keeps
            self.rng.uniform()  # dist still draws once: the RNG stays aligned with llama.cpp
            return int(ids[i])
        lg = (lg / np.float32(p.temp)).astype(np.float32)
        return int(ids[self._dist(lg)])

    def _grammar_mask(self, lg: np.ndarray, grammar) -> np.ndarray:
        """llama_grammar_apply_impl's mask, -inf for every token the grammar rejects.

        Only the top-k survivors can matter to the rest of the chain, so tokens are checked in
        the top-k order (logit descending, ties by id) until k are allowed; the rest are set to
        -inf unchecked. This leaves the top-k set, and so every later step, as llama.cpp has it;
        without top-k the whole vocabulary is checked. Tokens the grammar's prefilter rules
        out (no stack takes their first code point) are skipped unchecked."""
        n = lg.shape[0]
        k = self.p.top_k if 0 < self.p.top_k < n else n
        out = np.full(n, -np.inf, np.float32)
        order = np.argsort(-lg, kind="stable")
        keep = grammar.prefilter()
        if keep is not None:
            order = order[keep[order]]
        found = 0
        for tid in order.tolist():
            if lg[tid] == -np.inf:
                break
            if grammar.allows(tid):
                out[tid] = lg[tid]
                found += 1
                if found == k:
                    break
        return out

    def _typical(self, ids, lg):
        p = self.p
        prob = _softmax32(lg)
        with np.errstate(divide="ignore"):
            logp = np.log(prob)
        ent = np.float32(-(prob * np.where(prob > 0, logp, 0)).sum(dtype=np.float32))
        shifted = np.abs(-logp - ent)
        o = np.argsort(shifted, kind="stable")
        cum = np.float32(0.0)
        last = len(o)
        for i, j in enumerate(o):
            cum = np.float32(cum + prob[j])
            if cum > p.typical_p and (p.min_keep == 0 or i >= p.min_keep - 1):
                last = i + 1
                break
        o = o[:last]
        return ids[o], lg[o]

    def _dist(self, lg: np.ndarray) -> int:
        """llama_sampler_dist_apply: expf(l - max) in float32, summed in double, then the first
        index whose running sum reaches sum * uniform()."""
        if lg.shape[0] == 1:
            self.rng.uniform()
            return 0
        e = np.exp(lg - lg.max()).astype(np.float32)
        total = float(e.sum(dtype=np.float64))
        target = total * self.rng.uniform()
        run = np.cumsum(e, dtype=np.float64)
        i = int(np.searchsorted(run, target, side="left"))
        return min(i, lg.shape[0] - 1)


def _softmax32(lg: np.ndarray) -> np.ndarray:
    e = np.exp(lg - lg.max()).astype(np.float32)
    return (e / e.sum(dtype=np.float32)).astype(np.float32)
