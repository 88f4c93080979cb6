"""The decoder graph (llama, qwen2, gemma3) over memory-mapped weights and a preallocated state.

`Model.eval(tokens)` runs micro-batches of at most `n_batch` tokens through every block,
appending their keys and values to the F16 KV cache, and returns logits. It mirrors the
order and numerics of llama.cpp's graphs (src/models/llama.cpp, qwen2.cpp, gemma3.cpp):
RMSNorm with a float64 sum, activations quantized to each weight's dot partner, RoPE from a
float32 theta recurrence, and the non-flash attention path over fp16 keys and values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from gguf.quants import dequantize

from ..errors import LlamacliError
from ..gguf_io import GGUFFile
from ..kernels import ops
from ..kernels.dot import Activation
from ..kernels.dot.fp16 import round_to_f16
from .config import Config, config_from_gguf
from .weights import Linear, Weights, load_weights

# bytes of one KV cache entry (fp16)
KV_BYTES = 2


def kv_cache_bytes(cfg: Config, n_ctx: int) -> int:
    return cfg.n_layer * n_ctx * (cfg.n_embd_k + cfg.n_embd_v) * KV_BYTES


class State:
    """Scratch buffers and the KV cache, allocated once; `eval` allocates nothing per token."""

    def __init__(self, cfg: Config, weights: Weights, n_ctx: int, n_batch: int):
        E, F, T = cfg.n_embd, cfg.n_ff, n_batch
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.x = np.zeros((T, E), np.float32)  # residual stream
        self.xn = np.zeros((T, E), np.float32)  # normed input of a sub-block
        self.q = np.zeros((T, cfg.n_head * cfg.head_dim), np.float32)
        self.k = np.zeros((T, cfg.n_embd_k), np.float32)
        self.v = np.zeros((T, cfg.n_embd_v), np.float32)
        self.attn = np.zeros((T, cfg.n_head * cfg.head_dim_v), np.float32)  # attention output
        self.proj = np.zeros((T, E), np.float32)  # output of wo / w_down
        self.gate = np.zeros((T, F), np.float32)
        self.up = np.zeros((T, F), np.float32)
        self.ffn = np.zeros((T, F), np.float32)
        self.k_cache = np.zeros((cfg.n_layer, n_ctx, cfg.n_embd_k), np.uint16)  # fp16 bits
        # transposed, rows padded to 32: the attention's V dot reads whole chunks of 32 positions
        self.v_cache = np.zeros((cfg.n_layer, cfg.n_embd_v, (n_ctx + 31) // 32 * 32), np.uint16)
        # a row per thread: scores (n_ctx, padded to 32) then 32 floats of dot-product lanes
        self.scratch = np.zeros((numba.config.NUMBA_NUM_THREADS, n_ctx + 64), np.float32)
        half = cfg.rope_dims // 2
        self.cos = np.zeros((T, half), np.float32)
        self.sin = np.zeros((T, half), np.float32)
        self.cos_local = np.zeros((T, half), np.float32)
        self.sin_local = np.zeros((T, half), np.float32)
        self.pos = np.zeros(T, np.int64)
        self.head_dim = cfg.head_dim
        self.logits = np.zeros((T, cfg.n_vocab), np.float32)
        self.acts: dict[tuple[str, int], Activation] = {}
        lin: list[Linear] = [weights.output]
        for L in weights.layers:
            lin += [L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down]
        for w in lin:
            key = (w.dot.act, w.n_in)
            if key not in self.acts:
                self.acts[key] = Activation(w.dot.act, w.n_in, T)
        self.n_past = 0

        self.k_layers = list(self.k_cache)  # per-layer views, made once
        self.v_layers = list(self.v_cache)
        self._rows: dict[int, _Rows] = {}

    def rows(self, T: int) -> "_Rows":
        """The buffers' first T rows, as views made once per T (decode reuses the T = 1 set)."""
        r = self._rows.get(T)
        if r is None:
            r = self._rows[T] = _Rows(self, T)
        return r

    def reset(self) -> None:
        self.n_past = 0

    def truncate(self, n_keep: int) -> None:
        """Forget every position from n_keep on (llama_memory_seq_rm): the cache holds one K/V
        row per position and attention masks by n_past, so the rows are simply overwritten."""
        if not 0 <= n_keep <= self.n_past:
            raise ValueError(f"cannot keep {n_keep} of {self.n_past} cached positions")
        self.n_past = n_keep


class _Rows:
    """Views of the first T rows of each State buffer, shaped as the graph uses them."""

    def __init__(self, S: State, T: int):
        self.x, self.xn = S.x[:T], S.xn[:T]  # (T, E)
        self.q, self.k, self.v = S.q[:T], S.k[:T], S.v[:T]
        self.attn, self.proj = S.attn[:T], S.proj[:T]
        self.gate, self.up, self.ffn = S.gate[:T], S.up[:T], S.ffn[:T]  # (T, F)
        self.pos = S.pos[:T]
        self.q3 = self.q.reshape(T, -1, S.head_dim)  # (T, n_head, D)
        self.k3 = self.k.reshape(T, -1, S.head_dim)  # (T, n_head_kv, D)
        self.q_flat = self.q.reshape(-1)
        self.last_x, self.last_xn = self.x[T - 1:T], self.xn[:1]
        self.logits_last = S.logits[:1]


@dataclass
class Model:
    gguf: GGUFFile
    cfg: Config
    weights: Weights
    state: State
    n_threads: int
    trace: object = None  # optional callable(name, layer, array), named as llama.cpp's graph names its tensors

    # -- one linear layer, its input quantized once per (kind, width) --------------------

    def _load(self, x: np.ndarray, w: Linear) -> Activation:
        act = self.state.acts[(w.dot.act, w.n_in)]
        act.load(x)
        return act

    def _linear(self, x: np.ndarray, w: Linear, out: np.ndarray, act: Activation | None = None):
        if act is None or act.kind != w.dot.act:
            act = self._load(x, w)
        act.matmul(w.dot, w.rows, out)
        return act

    def _embed(self, tokens: np.ndarray, out: np.ndarray) -> None:
        emb = self.weights.token_embd
        out[:] = dequantize(emb.rows[tokens], emb.qtype).reshape(out.shape)
        if self.cfg.embed_scale != 1.0:
            out *= np.float32(self.cfg.embed_scale)

    # -- the graph ------------------------------------------------------------------------

    def _ubatch(self, tokens: np.ndarray, want: str) -> np.ndarray:
        """Run T <= n_batch tokens at positions n_past..; return logits of the last or all."""
        cfg, W, S = self.cfg, self.weights, self.state
        T = tokens.shape[0]
        p0 = S.n_past
        n_kv = p0 + T
        R = S.rows(T)
        x, xn = R.x, R.xn
        q, k, v = R.q, R.k, R.v
        attn, proj = R.attn, R.proj
        gate, up, ffn = R.gate, R.up, R.ffn
        pos = R.pos
        if T == 1:
            pos[0] = p0
        else:
            pos[:] = np.arange(p0, n_kv)
        ops.rope_cache(pos, cfg.rope_dims, cfg.rope_base, cfg.rope_freq_scale, S.cos, S.sin)
        if cfg.sliding_window:
            ops.rope_cache(pos, cfg.rope_dims, cfg.rope_base_local, cfg.rope_freq_scale_local,
                           S.cos_local, S.sin_local)
        q3, k3 = R.q3, R.k3  # (T, n_head, D), (T, n_head_kv, D)
        gemma = cfg.arch == "gemma3"
        kq_scale = np.float32(1.0) if gemma else np.float32(cfg.attn_scale)

        cb = self.trace
        self._embed(tokens, x)
        for il, L in enumerate(W.layers):
            # attention
            ops.rms_norm(x, L.attn_norm, cfg.rms_eps, xn)
            act = self._linear(xn, L.wq, q)
            act = self._linear(xn, L.wk, k, act)
            self._linear(xn, L.wv, v, act)
            if cb:
                cb("attn_norm", il, xn)
            for y, bias in ((q, L.bq), (k, L.bk), (v, L.bv)):  # build_qkv: ggml_add after each matmul
                if bias is not None:
                    y += bias
            if L.q_norm is not None:
                ops.rms_norm_heads(q3, L.q_norm, cfg.rms_eps)
                ops.rms_norm_heads(k3, L.k_norm, cfg.rms_eps)
            swa = cfg.is_swa_layer(il)
            cos, sin = (S.cos_local, S.sin_local) if swa else (S.cos, S.sin)
            ops.rope(q3, cos, sin, cfg.rope_dims, cfg.rope_neox)
            ops.rope(k3, cos, sin, cfg.rope_dims, cfg.rope_neox)
            if cb:
                cb("Qcur", il, q)
                cb("Kcur", il, k)
                cb("Vcur", il, v)
            if gemma:
                q *= np.float32(cfg.attn_scale)
            ops.store_kv(k, v, S.k_layers[il], S.v_layers[il], p0)
            round_to_f16(R.q_flat, R.q_flat)  # ggml converts q to fp16 for K @ q
            ops.attention(q3, S.k_layers[il], S.v_layers[il], pos, n_kv, kq_scale,
                          cfg.sliding_window if swa else 0, cfg.attn_softcap, S.scratch, attn)
            self._linear(attn, L.wo, proj)
            if cb:
                cb("kqv_out", il, attn)
                cb("attn_out", il, proj)
            if L.post_attn_norm is not None:
                ops.rms_norm(proj, L.post_attn_norm, cfg.rms_eps, proj)
                if cb:
                    cb("attn_post_norm", il, proj)
            ops.add_inplace(x, proj)
            # feed-forward
            ops.rms_norm(x, L.ffn_norm, cfg.rms_eps, xn)
            act = self._linear(xn, L.w_gate, gate)
            self._linear(xn, L.w_up, up, act)
            (ops.geglu if gemma else ops.swiglu)(gate, up, ffn)
            self._linear(ffn, L.w_down, proj)
            if cb:
                cb("sa_out" if gemma else "ffn_inp", il, x)
                cb("ffn_norm", il, xn)
                cb("ffn_gate", il, gate)
                cb("ffn_up", il, up)
                cb("ffn_geglu" if gemma else "ffn_swiglu", il, ffn)
                cb("ffn_out", il, proj)
            if L.post_ffn_norm is not None:
                ops.rms_norm(proj, L.post_ffn_norm, cfg.rms_eps, proj)
                if cb:
                    cb("ffn_post_norm", il, proj)
            ops.add_inplace(x, proj)
            if cb:
                cb("l_out", il, x)

        S.n_past = n_kv
        if want == "none":
            return S.logits[:0]
        if want == "all":
            rows, rows_n, logits = x, xn, S.logits[:T]
        else:
            rows, rows_n, logits = R.last_x, R.last_xn, R.logits_last
        ops.rms_norm(rows, W.output_norm, cfg.rms_eps, rows_n)
        self._linear(rows_n, W.output, logits)
        if W.output_bias is not None:
            logits += W.output_bias
        if cfg.final_softcap:
            # ggml_scale by 1.0f/c, ggml_tanh (glibc tanhf, correctly rounded here), ggml_scale by c
            c = np.float32(cfg.final_softcap)
            logits *= np.float32(1.0) / c
            logits[:] = np.tanh(logits.astype(np.float64))
            logits *= c
        return logits

    def eval(self, tokens, want: str = "last") -> np.ndarray:
        """Append tokens to the context; return logits (1, n_vocab) for 'last' or
        (len(tokens), n_vocab) for 'all'. The returned 'last' array is reused by the next call."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = tokens.shape[0]
        if n == 0:
            raise LlamacliError("nothing to evaluate")
        if self.state.n_past + n > self.state.n_ctx:
            raise LlamacliError(
                f"context full: {self.state.n_past} + {n} tokens exceed the context size {self.state.n_ctx}")
        if tokens.min() < 0 or tokens.max() >= self.cfg.n_vocab:
            raise LlamacliError(f"token id out of range [0, {self.cfg.n_vocab})")
        if numba.get_num_threads() != self.n_threads:
            numba.set_num_threads(self.n_threads)
        B = self.state.n_batch
        out = np.empty((n, self.cfg.n_vocab), np.float32) if want == "all" else None
        for s in range(0, n, B):
            chunk = tokens[s:s + B]
            last = s + B >= n
            lg = self._ubatch(chunk, "all" if want == "all" else ("last" if last else "none"))
            if out is not None:
                out[s:s + chunk.shape[0]] = lg
        return out if out is not None else lg


def load_model(path, n_ctx: int = 4096, n_batch: int = 512, n_threads: int = 2) -> Model:
    """Open a GGUF, read its config and weights (views), allocate the state."""
    from ..gguf_io import open_gguf

    gf = open_gguf(path)
    cfg = config_from_gguf(gf)
    weights = load_weights(gf, cfg)
    if n_ctx <= 0:
        n_ctx = cfg.n_ctx_train
    n_batch = max(1, min(n_batch, n_ctx))
    max_threads = numba.config.NUMBA_NUM_THREADS
    if n_threads < 1:
        raise LlamacliError(f"-t must be at least 1, got {n_threads}")
    state = State(cfg, weights, n_ctx, n_batch)
    return Model(gf, cfg, weights, state, min(n_threads, max_threads))
