"""The decoder graph of every supported family, over memory-mapped weights and a preallocated state.

`Model.eval(tokens)` runs micro-batches of at most `n_batch` tokens through every block,
appending their keys and values to the F16 KV cache, and returns logits. It mirrors the order
and numerics of llama.cpp's graphs (src/models/<arch>.cpp): RMSNorm with a float64 sum,
activations quantized to each weight's dot partner, RoPE from a float32 theta recurrence, and the
non-flash attention path over fp16 keys and values. Which optional steps a block takes (q/k norms,
post-norms, GeGLU, soft-caps, multipliers, NoPE layers, the q temperature) the family's spec says
through the Config and the tensors it loaded.

The graph calls its operations through `Model.be`, a `Backend` chosen when the model is loaded:
the CPU kernels of `llamacli.kernels` today, another device's later. The profiler wraps that
object's members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from gguf.quants import dequantize

from ..errors import LlamacliError
from ..gguf_io import GGUFFile
from ..kernels import cpu, flash, moe, ops
from ..kernels.dot import Activation
from ..kernels.dot.fp16 import round_to_f16
from .config import Config, config_from_gguf
from .weights import Linear, Weights, load_weights, place_weights

# bytes of one KV cache entry (fp16)
KV_BYTES = 2


def kv_cache_bytes(cfg: Config, n_ctx: int) -> int:
    return cfg.n_layer * n_ctx * (cfg.n_embd_k + cfg.n_embd_v) * KV_BYTES


class Backend:
    """The operations the graph runs, as attributes of one object (instance attributes, so that
    a profiler or another device can replace any of them for one model)."""

    def __init__(self, level: str = "avx2"):
        self.level = level  # kernels.cpu: which of ggml's x86 paths the arithmetic follows
        for name in ("rms_norm", "rms_norm_heads", "rope_cache", "rope", "store_kv", "attention", "swiglu",
                     "geglu", "add_inplace", "softcap_inplace"):
            setattr(self, name, getattr(ops, name))
        self.store_kv_rows = flash.store_kv_rows
        self.flash_attn = flash.flash_attn
        if cpu.wide(level):
            self.attention, self.swiglu = ops.attention_512, ops.swiglu_512
            self.flash_attn = lambda *a: flash.flash_attn(*a, wide=True)
        self.round_to_f16 = round_to_f16
        for name in ("route", "group_by_expert", "gather_rows", "add_bias_rows", "scatter_weighted", "sum_slots",
                     "swiglu_oai"):
            setattr(self, name, getattr(moe, name))
        if cpu.wide(level):
            self.route = lambda *a: moe.route(*a, True)

    def linear(self, act: Activation, w: Linear, out: np.ndarray) -> None:
        act.matmul(w.dot, w.rows, out)


class KVCache:
    """One sequence's keys and values, F16 as llama.cpp's default cache, and how many positions
    it holds. The State is one (the sequence `eval` appends to); `Model.eval_seqs` takes several,
    a server's slots, each with its own cells. Shapes are NumPy's. V is stored as llama.cpp
    stores it: by rows with flash attention, else transposed."""

    def __init__(self, cfg: Config, n_ctx: int, flash_attn: bool = False):
        self.n_ctx = n_ctx
        self.flash_attn = flash_attn
        self.k_cache = np.zeros((cfg.n_layer, n_ctx, cfg.n_embd_k), np.uint16)  # fp16 bits
        if flash_attn:  # (layer, n_ctx, n_embd_v)
            self.v_cache = np.zeros((cfg.n_layer, n_ctx, cfg.n_embd_v), np.uint16)
        else:  # transposed, rows padded to 32: the attention's V dot reads whole chunks of 32 positions
            self.v_cache = np.zeros((cfg.n_layer, cfg.n_embd_v, (n_ctx + 31) // 32 * 32), np.uint16)
        self.k_layers = list(self.k_cache)  # per-layer views, made once
        self.v_layers = list(self.v_cache)
        self.n_past = 0

    def reset(self) -> None:
        self.n_past = 0

    def truncate(self, n_keep: int) -> None:
        """Forget every position from n_keep on (llama_memory_seq_rm): the cache holds one K/V
        row per position and attention masks by n_past, so the rows are simply overwritten."""
        if not 0 <= n_keep <= self.n_past:
            raise ValueError(f"cannot keep {n_keep} of {self.n_past} cached positions")
        self.n_past = n_keep


class State(KVCache):
    """Scratch buffers and the KV cache, allocated once; `eval` allocates nothing per token.
    Shapes are NumPy's (row-major, tokens first); T = n_batch."""

    def __init__(self, cfg: Config, weights: Weights, n_ctx: int, n_batch: int, rope_factors=None,
                 flash_attn: bool = False):
        E, F, T = cfg.n_embd, cfg.n_ff, n_batch
        nq, nk, nv = cfg.n_head * cfg.head_dim, cfg.n_embd_k, cfg.n_embd_v
        super().__init__(cfg, n_ctx, flash_attn)
        self.n_batch = n_batch
        self.x = np.zeros((T, E), np.float32)  # residual stream
        self.xn = np.zeros((T, E), np.float32)  # normed input of a sub-block
        self.q = np.zeros((T, nq), np.float32)
        self.k = np.zeros((T, nk), np.float32)
        self.v = np.zeros((T, nv), np.float32)
        fused_qkv = any(L.wqkv is not None for L in weights.layers)
        self.qkv = np.zeros((T, nq + nk + nv) if fused_qkv else (0, 0), np.float32)  # attn_qkv's output
        self.attn = np.zeros((T, cfg.n_head * cfg.head_dim_v), np.float32)  # attention output
        self.proj = np.zeros((T, E), np.float32)  # output of wo / w_down
        self.gate = np.zeros((T, F), np.float32)
        self.up = np.zeros((T, F), np.float32)
        fused_up = any(L.w_gate is None for L in weights.layers)
        self.gate_up = np.zeros((T, 2 * F) if fused_up else (0, 0), np.float32)  # phi3's fused ffn_up
        self.ffn = np.zeros((T, F), np.float32)
        # a row per thread: scores (n_ctx, padded to 32) then 32 floats of dot-product lanes
        self.scratch = np.zeros((numba.config.NUMBA_NUM_THREADS, n_ctx + 64), np.float32)
        if flash_attn:  # kernels.flash: tiles per thread, (head, chunk) partials of the split path
            self.scratch = flash.Scratch(numba.config.NUMBA_NUM_THREADS, cfg.n_head, cfg.head_dim)
        half = cfg.rope.n_dims // 2
        # the frequency factors of every pair (rope_freqs / LongRoPE's), ones where there are none
        self.rope_factors = np.ones(half, np.float32) if rope_factors is None else np.ascontiguousarray(rope_factors)
        self.rope_factors_swa = np.ones(half, np.float32)  # the SWA layers of gemma/olmo take none
        self.cos = np.zeros((T, half), np.float32)  # (T, n_rot/2) of the full-attention layers
        self.sin = np.zeros((T, half), np.float32)
        self.cos_local = np.zeros((T, half), np.float32)  # of the sliding-window layers
        self.sin_local = np.zeros((T, half), np.float32)
        self.q_temp = np.ones((T, 1), np.float32)  # mistral3: q's temperature by position
        self.pos = np.zeros(T, np.int64)
        self.head_dim = cfg.head_dim
        self.logits = np.zeros((T, cfg.n_vocab), np.float32)
        self.no_sinks = np.zeros(0, np.float32)
        if cfg.n_expert:
            X, K, FX = cfg.n_expert, cfg.n_expert_used, cfg.n_ff_exp
            self.router = np.zeros((T, X), np.float32)  # router logits
            self.probs = np.zeros((T, X), np.float32)
            self.sel = np.zeros((T, K), np.int64)  # each token's experts, best first
            self.wts = np.zeros((T, K), np.float32)  # and their weights
            self.counts = np.zeros(X, np.int64)  # tokens per expert, where they start in order
            self.starts = np.zeros(X, np.int64)
            self.order = np.zeros(T * K, np.int64)  # (token, slot) pairs t * K + s, by expert
            self.xe = np.zeros((T, E), np.float32)  # one expert's inputs, gathered
            self.ge = np.zeros((T, FX), np.float32)  # its gate, up and activation
            self.ue = np.zeros((T, FX), np.float32)
            self.ae = np.zeros((T, FX), np.float32)
            self.ye = np.zeros((T, E), np.float32)  # its outputs
            self.slots = np.zeros((T, K, E), np.float32)  # weighted outputs by (token, slot)
        self.acts: dict[tuple[str, int], Activation] = {}
        lin: list[Linear] = [weights.output]
        for L in weights.layers:
            lin += [w for w in (L.wq, L.wk, L.wv, L.wqkv, L.wo, L.w_gate, L.w_up, L.w_down) if w is not None]
            if L.moe is not None:
                lin += [L.moe.gate_inp, L.moe.up[0], L.moe.down[0]] + ([L.moe.gate[0]] if L.moe.gate else [])
        for w in lin:
            key = (w.dot.act, w.n_in)
            if key not in self.acts:
                self.acts[key] = Activation(w.dot.act, w.n_in, T)
        self._rows: dict[int, _Rows] = {}

    def rows(self, T: int) -> "_Rows":
        """The buffers' first T rows, as views made once per T (decode reuses the T = 1 set)."""
        r = self._rows.get(T)
        if r is None:
            r = self._rows[T] = _Rows(self, T)
        return r


class _Rows:
    """Views of the first T rows of each State buffer, shaped as the graph uses them."""

    def __init__(self, S: State, T: int):
        self.x, self.xn = S.x[:T], S.xn[:T]  # (T, E)
        self.q, self.k, self.v = S.q[:T], S.k[:T], S.v[:T]
        nq, nk = S.q.shape[1], S.k.shape[1]
        self.qkv = S.qkv[:T]  # (T, nq + nk + nv), and its three column blocks
        self.qkv_parts = (self.qkv[:, :nq], self.qkv[:, nq:nq + nk], self.qkv[:, nq + nk:]) if S.qkv.size else ()
        self.attn, self.proj = S.attn[:T], S.proj[:T]
        self.gate, self.up, self.ffn = S.gate[:T], S.up[:T], S.ffn[:T]  # (T, F)
        F = S.gate.shape[1]
        self.gate_up = S.gate_up[:T]  # (T, 2F): gate half, then up half
        self.gate_up_parts = (self.gate_up[:, :F], self.gate_up[:, F:]) if S.gate_up.size else ()
        self.pos = S.pos[:T]
        self.q_temp = S.q_temp[:T]  # (T, 1)
        self.q3 = self.q.reshape(T, -1, S.head_dim)  # (T, n_head, D)
        self.k3 = self.k.reshape(T, -1, S.head_dim)  # (T, n_head_kv, D)
        self.q_flat = self.q.reshape(-1)
        self.n = T
        self._spans: dict[tuple[int, int], _Span] = {}

    def span(self, r0: int, r1: int) -> "_Span":
        """Rows r0..r1-1: one sequence's tokens in a multi-sequence step (views made once)."""
        sp = self._spans.get((r0, r1))
        if sp is None:
            if len(self._spans) >= MAX_SPANS:  # prompts split in many ways: start over
                self._spans.clear()
            sp = self._spans[(r0, r1)] = _Span(self, r0, r1)
        return sp


MAX_SPANS = 256  # row ranges whose views a _Rows set keeps


class _Span:
    """The rows of one sequence within a _Rows set: what its attention reads and writes."""

    def __init__(self, R: _Rows, r0: int, r1: int):
        self.n = r1 - r0
        self.k, self.v = R.k[r0:r1], R.v[r0:r1]  # (n, n_embd_k), (n, n_embd_v)
        self.q3 = R.q3[r0:r1]  # (n, n_head, D)
        self.pos = R.pos[r0:r1]
        self.attn = R.attn[r0:r1]  # (n, n_head * D_v)


@dataclass
class Model:
    gguf: GGUFFile
    cfg: Config
    weights: Weights
    state: State
    n_threads: int
    be: Backend = None  # the operations, chosen at load
    trace: object = None  # optional callable(name, layer, array), named as llama.cpp's graph names its tensors
    observe: object = None  # optional callable(w: Linear, x): each matmul's float32 input (llamacli.imatrix)

    def __post_init__(self):
        if self.be is None:
            self.be = Backend()

    # -- one linear layer, its input quantized once per (kind, width) --------------------

    def _load(self, x: np.ndarray, w: Linear) -> Activation:
        act = self.state.acts[(w.dot.act, w.n_in)]
        act.load(x)
        return act

    def _linear(self, x: np.ndarray, w: Linear, out: np.ndarray, act: Activation | None = None,
                bias: np.ndarray | None = None):
        """out = W x (+ bias, a ggml_add after the matmul as build_lora_mm's callers do)."""
        if self.observe is not None:
            self.observe(w, x)
        if act is None or act.kind != w.dot.act:
            act = self._load(x, w)
        self.be.linear(act, w, out)
        if bias is not None:
            out += bias
        return act

    def _embed(self, tokens: np.ndarray, out: np.ndarray) -> None:
        emb = self.weights.token_embd
        out[:] = dequantize(emb.rows[tokens], emb.qtype).reshape(out.shape)
        if self.cfg.embed_scale != 1.0:  # ggml_scale (gemma: sqrtf(n_embd); granite: embedding_scale)
            out *= np.float32(self.cfg.embed_scale)

    def _qkv(self, L, h: np.ndarray, R: "_Rows") -> None:
        """build_qkv: one fused matmul split into q, k, v, or three sharing the quantized input;
        then the biases."""
        if L.wqkv is not None:
            self._linear(h, L.wqkv, R.qkv, bias=L.bqkv)
            for dst, src in zip((R.q, R.k, R.v), R.qkv_parts):
                dst[:] = src
            for y, b in ((R.q, L.bq), (R.k, L.bk), (R.v, L.bv)):
                if b is not None:
                    y += b
            return
        act = self._linear(h, L.wq, R.q, bias=L.bq)
        act = self._linear(h, L.wk, R.k, act, bias=L.bk)
        self._linear(h, L.wv, R.v, act, bias=L.bv)

    def _moe(self, M, h: np.ndarray, T: int, out: np.ndarray) -> None:
        """build_moe_ffn: the router picks each token's experts and weights; each expert chosen
        by any token of the batch runs once over all of them (ggml_mul_mat_id reads only the
        chosen experts' rows); the weighted outputs are summed in selection order."""
        cfg, S, be = self.cfg, self.state, self.be
        K = cfg.n_expert_used
        router, sel, wts = S.router[:T], S.sel[:T], S.wts[:T]
        self._linear(h, M.gate_inp, router, bias=M.gate_inp_b)
        be.route(router, S.probs[:T], sel, wts, cfg.expert_gating == "softmax_weight", cfg.expert_norm,
                 cfg.expert_weights_scale)
        be.group_by_expert(sel, cfg.n_expert, S.counts, S.starts, S.order)
        glu = be.swiglu_oai if cfg.ffn_act == "swiglu_oai" else (be.geglu if cfg.ffn_act == "gelu" else be.swiglu)
        for e in range(cfg.n_expert):
            n = S.counts[e]
            if n == 0:
                continue
            pairs = S.order[S.starts[e]:S.starts[e] + n]
            xe, ge, ue, ae, ye = S.xe[:n], S.ge[:n], S.ue[:n], S.ae[:n], S.ye[:n]
            be.gather_rows(h, pairs, K, xe)
            act = self._linear(xe, M.up[e], ue)
            if M.up_b is not None:
                be.add_bias_rows(ue, M.up_b[e])
            self._linear(xe, M.gate[e], ge, act)
            if M.gate_b is not None:
                be.add_bias_rows(ge, M.gate_b[e])
            glu(ge, ue, ae)
            self._linear(ae, M.down[e], ye)
            if M.down_b is not None:
                be.add_bias_rows(ye, M.down_b[e])
            be.scatter_weighted(ye, pairs, K, wts, S.slots)
        be.sum_slots(S.slots[:T], out)

    def _ffn(self, L, h: np.ndarray, R: "_Rows") -> None:
        """build_ffn, LLM_FFN_PAR: act(gate(h)) * up(h), then down; or one fused ffn_up whose
        first half is the gate (phi3, LLM_FFN_SWIGLU over ffn_up); or the experts."""
        be = self.be
        if L.moe is not None:
            self._moe(L.moe, h, h.shape[0], R.proj)
            return
        if L.w_gate is None:
            self._linear(h, L.w_up, R.gate_up, bias=L.b_up)
            R.gate[:], R.up[:] = R.gate_up_parts
        else:
            act = self._linear(h, L.w_gate, R.gate, bias=L.b_gate)
            self._linear(h, L.w_up, R.up, act, bias=L.b_up)
        (be.geglu if self.cfg.ffn_act == "gelu" else be.swiglu)(R.gate, R.up, R.ffn)
        self._linear(R.ffn, L.w_down, R.proj, bias=L.b_down)

    # -- the graph ------------------------------------------------------------------------

    def _ubatch(self, tokens: np.ndarray, want, seqs=None) -> np.ndarray:
        """Run T <= n_batch tokens at positions n_past..; return logits of the last, all, none,
        or (want an int k) rows k.. . As llama.cpp's graphs do with inp_out_ids, the last
        block runs its feed-forward part over the output rows only (which decides the batched
        kernels those rows take).

        seqs: None, every row appended to the State's own cache; or ((cache, n), ...), the rows
        split in order among sequences, each row at its own sequence's next position and its
        attention over that sequence's cache alone; then `want` is ignored and the logits are
        those of each sequence's last row, one row per sequence."""
        cfg, W, S, be = self.cfg, self.weights, self.state, self.be
        T = tokens.shape[0]
        R = S.rows(T)
        x, xn = R.x, R.xn
        q, k, v = R.q, R.k, R.v
        attn, proj = R.attn, R.proj
        pos = R.pos
        # (cache, first position, its rows): one part holding every row, or one a sequence
        parts = [(S, S.n_past, R)]
        if seqs is not None:
            parts, r = [], 0
            for cache, n in seqs:
                parts.append((cache, cache.n_past, R.span(r, r + n)))
                r += n
        for cache, p0, P in parts:
            if P.n == 1:
                P.pos[0] = p0
            else:
                P.pos[:] = np.arange(p0, p0 + P.n)
        r = cfg.rope
        be.rope_cache(pos, r.n_dims, r.base, r.freq_scale, r.ext_factor, r.attn_factor, r.corr_lo, r.corr_hi,
                      S.rope_factors, S.cos, S.sin)
        if cfg.sliding_window:
            r = cfg.rope_swa
            be.rope_cache(pos, r.n_dims, r.base, r.freq_scale, r.ext_factor, r.attn_factor, r.corr_lo, r.corr_hi,
                          S.rope_factors_swa, S.cos_local, S.sin_local)
        if cfg.attn_temp_scale:
            # llm_graph_input_attn_temp: log(floor(pos / n) + 1) * scale + 1, in double
            for t in range(T):
                S.q_temp[t, 0] = math.log(math.floor(np.float32(pos[t]) / np.float32(cfg.attn_temp_floor)) + 1.0) \
                    * cfg.attn_temp_scale + 1.0
        q3, k3 = R.q3, R.k3  # (T, n_head, D), (T, n_head_kv, D)
        kq_scale = np.float32(1.0) if cfg.scale_q else np.float32(cfg.attn_scale)
        res_scale = np.float32(cfg.residual_scale)

        # the rows whose logits are wanted (llm_graph_input_out_ids); None: every row
        if seqs is not None:
            keep = np.cumsum([P.n for _, _, P in parts]) - 1
        elif want == "all" or (isinstance(want, (int, np.integer)) and want <= 0):
            keep = None
        elif isinstance(want, (int, np.integer)):
            keep = np.arange(min(int(want), T - 1), T)
        else:  # "last", and "none" (its rows are not read: the last stands in)
            keep = np.array([T - 1])
        if keep is not None and keep.shape[0] == T:
            keep = None
        last_layer = len(W.layers) - 1
        cb = self.trace
        self._embed(tokens, x)
        for il, L in enumerate(W.layers):
            # attention
            h = x
            if L.attn_norm is not None:
                be.rms_norm(x, L.attn_norm, cfg.rms_eps, xn)
                h = xn
                if cb:
                    cb("attn_norm", il, xn)
            self._qkv(L, h, R)
            if cfg.qk_norm == "head":
                be.rms_norm_heads(q3, L.q_norm, cfg.rms_eps)
                be.rms_norm_heads(k3, L.k_norm, cfg.rms_eps)
            elif cfg.qk_norm == "full":
                be.rms_norm(q, L.q_norm, cfg.rms_eps, q)
                be.rms_norm(k, L.k_norm, cfg.rms_eps, k)
            swa = cfg.is_swa_layer(il)
            if cfg.rope_layers[il]:
                cos, sin = (S.cos_local, S.sin_local) if swa else (S.cos, S.sin)
                be.rope(q3, cos, sin, cfg.rope.n_dims, cfg.rope_neox)
                be.rope(k3, cos, sin, cfg.rope.n_dims, cfg.rope_neox)
            if cb:
                cb("Qcur", il, q)
                cb("Kcur", il, k)
                cb("Vcur", il, v)
            if cfg.scale_q:
                q *= np.float32(cfg.attn_scale)
            if cfg.attn_temp_scale:
                q3 *= R.q_temp[:, :, None]
            window, sinks = (cfg.sliding_window if swa else 0), (S.no_sinks if L.sinks is None else L.sinks)
            if S.flash_attn:  # ggml_flash_attn_ext: each sequence's rows against its own cache
                for cache, p0, P in parts:
                    n = p0 + P.n
                    be.store_kv_rows(P.k, P.v, cache.k_layers[il], cache.v_layers[il], p0)
                    be.flash_attn(P.q3, cache.k_layers[il], cache.v_layers[il], P.pos, n,
                                  flash.graph_n_kv(n, cache.n_ctx), self.n_threads, kq_scale, window,
                                  cfg.attn_softcap, sinks, S.scratch, P.attn)
            else:
                be.round_to_f16(R.q_flat, R.q_flat)  # ggml converts q to fp16 for K @ q
                for cache, p0, P in parts:  # each sequence's rows against its own cache
                    be.store_kv(P.k, P.v, cache.k_layers[il], cache.v_layers[il], p0)
                    be.attention(P.q3, cache.k_layers[il], cache.v_layers[il], P.pos, p0 + P.n, kq_scale, window,
                                 cfg.attn_softcap, sinks, S.scratch, P.attn)
            self._linear(attn, L.wo, proj, bias=L.bo)
            if cb:
                cb("kqv_out", il, attn)
                cb("attn_out", il, proj)
            if il == last_layer and keep is not None:  # ggml_get_rows(cur / inpSA, inp_out_ids)
                for i, j in enumerate(keep):  # j >= i: nothing is overwritten before it is read
                    if i != j:
                        x[i], proj[i] = x[j], proj[j]
                R = S.rows(keep.shape[0])
                x, xn, proj = R.x, R.xn, R.proj
            if L.post_attn_norm is not None:
                be.rms_norm(proj, L.post_attn_norm, cfg.rms_eps, proj)
                if cb:
                    cb("attn_post_norm", il, proj)
            if res_scale:
                proj *= res_scale
            be.add_inplace(x, proj)
            # feed-forward
            h = x
            if L.ffn_norm is not None:
                be.rms_norm(x, L.ffn_norm, cfg.rms_eps, xn)
                h = xn
            self._ffn(L, h, R)
            if cb:
                cb("ffn_inp", il, x)
                cb("ffn_norm", il, xn)
                cb("ffn_out", il, proj)
            if L.post_ffn_norm is not None:
                be.rms_norm(proj, L.post_ffn_norm, cfg.rms_eps, proj)
                if cb:
                    cb("ffn_post_norm", il, proj)
            if res_scale:
                proj *= res_scale
            be.add_inplace(x, proj)
            if cb:
                cb("l_out", il, x)

        for cache, p0, P in parts:
            cache.n_past = p0 + P.n
        if want == "none" and seqs is None:
            return S.logits[:0]
        rows, rows_n, logits = x, xn, S.logits[:x.shape[0]]  # the output rows, moved to the front
        be.rms_norm(rows, W.output_norm, cfg.rms_eps, rows_n)
        self._linear(rows_n, W.output, logits, bias=W.output_bias)
        if cfg.logit_scale:
            logits *= np.float32(1.0) / np.float32(cfg.logit_scale)  # granite: ggml_scale by 1.0f/s
        if cfg.final_softcap:
            be.softcap_inplace(logits, cfg.final_softcap)
        if cb:
            cb("result_norm", -1, rows_n)
            cb("result_output", -1, logits)
        return logits

    def _check(self, tokens: np.ndarray, cache: KVCache) -> None:
        n = tokens.shape[0]
        if n == 0:
            raise LlamacliError("nothing to evaluate")
        if cache.n_past + n > cache.n_ctx:
            raise LlamacliError(f"context full: {cache.n_past} + {n} tokens exceed the context size {cache.n_ctx}")
        if tokens.min() < 0 or tokens.max() >= self.cfg.n_vocab:
            raise LlamacliError(f"token id out of range [0, {self.cfg.n_vocab})")
        if numba.get_num_threads() != self.n_threads:
            numba.set_num_threads(self.n_threads)

    def new_cache(self) -> KVCache:
        """Another sequence's KV cache, of the State's context size, for `eval_seqs`."""
        return KVCache(self.cfg, self.state.n_ctx, self.state.flash_attn)

    def eval_seqs(self, batch) -> np.ndarray:
        """One step over several sequences (llama_batch with a seq_id a token): batch is
        [(cache, tokens), ...], each cache a distinct KVCache of this model (`new_cache`, or the
        State), each tokens non-empty, n_batch tokens at most in all. Every matmul runs over
        all the rows at once; each row's attention reads its own sequence's cache up to its own
        length. The matmul kernels compute each row on its own, so a sequence gets the logits
        `eval` would give it alone, bit for bit (tests/test_serve_batch.py).

        Returns (len(batch), n_vocab): row i follows the last token of sequence i; the array is
        reused by the next call."""
        seqs, chunks = [], []
        for cache, tokens in batch:
            tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
            if cache.n_ctx > self.state.n_ctx or cache.k_cache.shape[0] != self.cfg.n_layer \
                    or cache.flash_attn != self.state.flash_attn:
                raise LlamacliError("a KV cache made for another model or a larger context")
            self._check(tokens, cache)
            seqs.append((cache, tokens.shape[0]))
            chunks.append(tokens)
        if not seqs:
            raise LlamacliError("nothing to evaluate")
        if len({id(c) for c, _ in seqs}) != len(seqs):
            raise LlamacliError("a sequence appears twice in one batch")
        tokens = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        if tokens.shape[0] > self.state.n_batch:
            raise LlamacliError(f"{tokens.shape[0]} tokens exceed the batch size {self.state.n_batch}")
        return self._ubatch(tokens, "last", seqs)

    def eval(self, tokens, want: str = "last") -> np.ndarray:
        """Append tokens to the context; return logits (1, n_vocab) for 'last' or
        (len(tokens), n_vocab) for 'all'. The returned 'last' array is reused by the next call."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = tokens.shape[0]
        self._check(tokens, self.state)
        B = self.state.n_batch
        out = np.empty((n, self.cfg.n_vocab), np.float32) if want == "all" else None
        for s in range(0, n, B):
            chunk = tokens[s:s + B]
            last = s + B >= n
            lg = self._ubatch(chunk, "all" if want == "all" else ("last" if last else "none"))
            if out is not None:
                out[s:s + chunk.shape[0]] = lg
        return out if out is not None else lg

    def eval_rows(self, tokens, first: int) -> np.ndarray:
        """Append tokens (in micro-batches of n_batch, as llama_decode splits a batch) and return
        the logits of rows first.. (len(tokens) - first, n_vocab): a llama_batch whose logits
        flags are set from position `first` on, as llama-perplexity asks for them."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = tokens.shape[0]
        self._check(tokens, self.state)
        B = self.state.n_batch
        out = np.empty((max(n - first, 0), self.cfg.n_vocab), np.float32)
        for s in range(0, n, B):
            chunk = tokens[s:s + B]
            e = s + chunk.shape[0]
            if e <= first:
                self._ubatch(chunk, "none")
                continue
            k = max(first - s, 0)
            out[s + k - first:e - first] = self._ubatch(chunk, k if k > 0 else "all")
        return out


def load_model(path, n_ctx: int = 4096, n_batch: int = 512, n_threads: int = 2, backend: Backend | None = None,
               cpu_level: str | None = None, flash_attn: bool | str = False) -> Model:
    """Open a GGUF, read its config and weights (views), allocate the state. cpu_level (else
    $LLAMACLI_CPU, else this machine's) picks which of ggml's x86 paths the arithmetic follows.
    flash_attn: True/"on", "auto" (on: ggml's CPU backend runs it for every family here) or
    False/"off"; off by default here as in llama_cpp.Llama, while the subcommands default to
    llama.cpp's tools' "auto"."""
    from ..gguf_io import open_gguf

    try:
        level = backend.level if backend is not None else cpu.resolve(cpu_level)
    except cpu.CpuLevelError as e:
        raise LlamacliError(str(e)) from None
    gf = open_gguf(path)
    cfg = config_from_gguf(gf)
    weights = place_weights(load_weights(gf, cfg), level)
    if n_ctx <= 0:
        n_ctx = cfg.n_ctx_train
    n_batch = max(1, min(n_batch, n_ctx))
    max_threads = numba.config.NUMBA_NUM_THREADS
    if n_threads < 1:
        raise LlamacliError(f"-t must be at least 1, got {n_threads}")
    # llama.cpp's n_ctx_seq is the context of one sequence: all of it here
    fa = resolve_flash_attn(flash_attn, cfg)
    state = State(cfg, weights, n_ctx, n_batch, weights.rope_factors(n_ctx, cfg.n_ctx_orig_yarn), fa)
    return Model(gf, cfg, weights, state, min(n_threads, max_threads), backend or Backend(level))


def resolve_flash_attn(value: bool | str, cfg: Config) -> bool:
    """-fa on|off|auto as llama_context takes it: auto is on where the device runs the
    operation, which ggml's CPU backend does for F16 caches whatever the head size."""
    if isinstance(value, bool):
        on = value
    elif str(value).lower() in ("on", "auto", "1", "true"):
        on = True
    elif str(value).lower() in ("off", "0", "false"):
        on = False
    else:
        raise LlamacliError(f"-fa: expected on, off or auto, got '{value}'")
    if on and cfg.head_dim != cfg.head_dim_v:
        if str(value).lower() == "auto":
            return False
        raise LlamacliError(f"flash attention: key and value heads differ ({cfg.head_dim} vs {cfg.head_dim_v})")
    return on
