"""What every family spec shares: the config from common and family keys, and the tensors of a
llama-style block, which most families take with a few changes.

A spec mirrors one `src/models/<arch>.cpp` of llama.cpp: `hparams` is its `load_arch_hparams`,
`tensors` its `load_arch_tensors` (shapes in ggml order, ne0 first), and the flags it puts in the
Config choose the steps of the one decoder graph in `model/transformer.py`.
"""

from __future__ import annotations

from dataclasses import fields

from gguf.constants import Keys

from ...errors import LlamacliError
from ..config import Config, HParams, common_hparams, f32_inv_sqrt, make_rope, swa_pattern, yarn_args
from ..weights import Experts, Layer, TensorLoader, Weights


class ArchSpec:
    name = ""
    rope_neox = False  # llama_model_rope_type: NEOX for this family, else NORM
    types: dict[int, str] = {}  # LLM_TYPE by block count (load_arch_hparams' switch)
    moe = False  # does the family have mixture-of-experts blocks?

    # -- hyper-parameters ------------------------------------------------------------------

    def type_name(self, c: dict) -> str:
        return self.types.get(c["n_layer"], "?B")

    def hparams(self, h: HParams, c: dict) -> None:
        """The family's own keys: update c (the Config's fields) in place."""

    def config(self, h: HParams) -> Config:
        c = common_hparams(h)
        n_layer = c["n_layer"]
        c.update(arch=self.name, rope_neox=self.rope_neox, rope_layers=(True,) * n_layer, sliding_window=0,
                 swa_layers=(False,) * n_layer, scale_q=False, attn_scale=f32_inv_sqrt(c["head_dim"]))
        c["_yarn"] = dict(beta_fast=32.0, beta_slow=1.0, log_mul=0.0)
        if c["n_expert"] and not self.moe:
            raise LlamacliError(f"{h.path}: metadata key '{h.key(Keys.LLM.EXPERT_COUNT)}' = {c['n_expert']}: "
                                f"the {self.name} architecture has no mixture-of-experts layers in llama.cpp")
        self.hparams(h, c)
        c.setdefault("model_type", self.type_name(c))
        if c.pop("_n_rot_must_match", True) and c["_n_rot"] != c["head_dim"]:
            raise LlamacliError(f"{h.path}: invalid n_rot: {c['_n_rot']}, expected {c['head_dim']}")
        self._ropes(c)
        names = {f.name for f in fields(Config)}
        return Config(**{k: v for k, v in c.items() if k in names})

    def _ropes(self, c: dict) -> None:
        """The RoPE of full and sliding-window layers, from what hparams left in c."""
        y = c["_yarn"]
        ext, attn = yarn_args(c["rope_scaling"], c["_freq_scale"], c["_rope_attn_factor"], y["log_mul"])
        kw = dict(ext_factor=ext, attn_factor=attn, n_ctx_orig=c["n_ctx_orig_yarn"],
                  beta_fast=y["beta_fast"], beta_slow=y["beta_slow"])
        c["rope"] = make_rope(c["_n_rot"], c["_base"], c["_freq_scale"], **kw)
        swa = c.get("_swa_rope")  # (base, freq_scale, yarn applies?) of the SWA layers
        if swa is None:
            c["rope_swa"] = c["rope"]
        else:
            base, scale, yarn = swa
            c["rope_swa"] = make_rope(c["_n_rot"], base, scale, **(kw if yarn else {}))

    @staticmethod
    def require_experts(h: HParams, c: dict) -> None:
        """Families that are mixtures of experts only (llama.cpp throws 'n_expert must be > 0')."""
        if not c["n_expert"]:
            raise LlamacliError(f"{h.path}: metadata key '{h.key(Keys.LLM.EXPERT_COUNT)}' is missing or 0 "
                                f"(required by {h.arch})")

    @staticmethod
    def set_swa(h: HParams, c: dict, window: int, pattern: int, dense_first: bool = False) -> None:
        """load_swa_pattern: the file's sliding_window_pattern (a number or a per-layer array)
        overrides the family's default pattern."""
        c["sliding_window"] = window
        c["swa_layers"] = swa_pattern(h.get(Keys.Attention.SLIDING_WINDOW_PATTERN, pattern), c["n_layer"], dense_first)

    # -- tensors -----------------------------------------------------------------------------

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        raise NotImplementedError

    @staticmethod
    def head(t: TensorLoader, cfg: Config, tied: str = "optional", output_bias: bool = False) -> dict:
        """token_embd, output_norm and the output head: tied = "optional" takes token_embd itself
        where the file has no output.weight (TENSOR_DUPLICATED), "always" never reads an
        output.weight (gemma2), "never" requires one (olmo2)."""
        E, V = cfg.n_embd, cfg.n_vocab
        emb = t.rows("token_embd.weight", E, V)
        out = None if tied == "always" else t.linear("output.weight", E, V, required=tied == "never")
        tied = out is None
        if tied:
            from ..weights import linear_from
            out = linear_from(emb, E, V)
        return dict(token_embd=emb, output_norm=t.vector("output_norm.weight", E), output=out, tied=tied,
                    output_bias=t.vector("output.bias", V, required=False) if output_bias else None)

    @staticmethod
    def rope_factor_tensors(t: TensorLoader, cfg: Config) -> dict:
        """rope_freqs (Llama 3), or LongRoPE's long and short factors when the scaling type says
        so; each one tensor shared by every layer."""
        n = cfg.rope.n_dims // 2
        if cfg.rope_scaling == "longrope":
            return dict(rope_long=t.vector("rope_factors_long.weight", n, required=False),
                        rope_short=t.vector("rope_factors_short.weight", n, required=False))
        return dict(rope_freqs=t.vector("rope_freqs.weight", n, required=False))

    @staticmethod
    def qkv(t: TensorLoader, cfg: Config, p: str, n_q: int | None = None, required: bool = True) -> dict:
        """create_tensor_qkv: the fused attn_qkv where the file has it (with its bias, or the
        separate biases), else attn_q, attn_k, attn_v with optional biases."""
        E = cfg.n_embd
        n_q = n_q or cfg.n_head * cfg.head_dim
        n_k, n_v = cfg.n_embd_k, cfg.n_embd_v
        if t.has(p + "attn_qkv.weight"):
            d = dict(wqkv=t.linear(p + "attn_qkv.weight", E, n_q + n_k + n_v),
                     bqkv=t.vector(p + "attn_qkv.bias", n_q + n_k + n_v, required=False))
            if d["bqkv"] is None:
                d.update(bq=t.vector(p + "attn_q.bias", n_q, False), bk=t.vector(p + "attn_k.bias", n_k, False),
                         bv=t.vector(p + "attn_v.bias", n_v, False))
            return d
        return dict(wq=t.linear(p + "attn_q.weight", E, n_q, required), wk=t.linear(p + "attn_k.weight", E, n_k, required),
                    wv=t.linear(p + "attn_v.weight", E, n_v, required),
                    bq=t.vector(p + "attn_q.bias", n_q, False), bk=t.vector(p + "attn_k.bias", n_k, False),
                    bv=t.vector(p + "attn_v.bias", n_v, False))

    @staticmethod
    def ffn(t: TensorLoader, cfg: Config, p: str, biases: bool = False) -> dict:
        E, F = cfg.n_embd, cfg.n_ff
        d = dict(w_gate=t.linear(p + "ffn_gate.weight", E, F), w_up=t.linear(p + "ffn_up.weight", E, F),
                 w_down=t.linear(p + "ffn_down.weight", F, E))
        if biases:
            d.update(b_gate=t.vector(p + "ffn_gate.bias", F, False), b_up=t.vector(p + "ffn_up.bias", F, False),
                     b_down=t.vector(p + "ffn_down.bias", E, False))
        return d

    @staticmethod
    def blocks(cfg: Config, make) -> tuple[Layer, ...]:
        """make(prefix) for every block, prefix "blk.{i}." as gguf names them."""
        return tuple(make(f"blk.{i}.") for i in range(cfg.n_layer))

    @staticmethod
    def experts(t: TensorLoader, cfg: Config, p: str, biases: bool = False) -> Experts:
        """The router ffn_gate_inp and the 3-D expert tensors *_exps (create_tensor with
        {n_embd, n_ff_exp, n_expert}), with gpt-oss's biases."""
        E, F, X = cfg.n_embd, cfg.n_ff_exp, cfg.n_expert
        d = dict(gate_inp=t.linear(p + "ffn_gate_inp.weight", E, X),
                 gate=t.experts(p + "ffn_gate_exps.weight", E, F, X), up=t.experts(p + "ffn_up_exps.weight", E, F, X),
                 down=t.experts(p + "ffn_down_exps.weight", F, E, X))
        if biases:
            d.update(gate_inp_b=t.vector(p + "ffn_gate_inp.bias", X), gate_b=t.matrix(p + "ffn_gate_exps.bias", F, X),
                     up_b=t.matrix(p + "ffn_up_exps.bias", F, X), down_b=t.matrix(p + "ffn_down_exps.bias", E, X))
        return Experts(**d)

    def llama_layers(self, t: TensorLoader, cfg: Config, biases: bool = False, post_norms: bool = False,
                     qk_norm: int = 0) -> tuple[Layer, ...]:
        """Blocks of attn_norm, q/k/v (fused or split), attn_output, ffn_norm and a gated FFN;
        biases: the optional attn_output and FFN biases; post_norms: gemma's norms after attention
        and FFN; qk_norm: the width of the q/k norm weights (0: none)."""
        E = cfg.n_embd

        def block(p: str) -> Layer:
            d = dict(attn_norm=t.vector(p + "attn_norm.weight", E), **self.qkv(t, cfg, p),
                     wo=t.linear(p + "attn_output.weight", cfg.n_head * cfg.head_dim_v, E),
                     ffn_norm=t.vector(p + "ffn_norm.weight", E))
            if cfg.n_expert:
                d["moe"] = self.experts(t, cfg, p)
            else:
                d.update(self.ffn(t, cfg, p, biases))
            if biases:
                d["bo"] = t.vector(p + "attn_output.bias", E, False)
            if qk_norm:
                d.update(q_norm=t.vector(p + "attn_q_norm.weight", qk_norm),
                         k_norm=t.vector(p + "attn_k_norm.weight", qk_norm))
            if post_norms:
                d.update(post_attn_norm=t.vector(p + "post_attention_norm.weight", E),
                         post_ffn_norm=t.vector(p + "post_ffw_norm.weight", E))
            return Layer(**d)

        return self.blocks(cfg, block)
