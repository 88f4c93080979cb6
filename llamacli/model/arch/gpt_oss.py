"""gpt-oss (src/models/openai-moe.cpp, llama.cpp's LLM_ARCH_OPENAI_MOE): biases on every
projection and on the experts (ggml_add_id by the chosen expert), a learned attention sink per
head that joins every softmax, sliding-window attention on alternate layers, YaRN, and experts
chosen by the top-k router logits with a softmax over just those, each through the clamped
SwiGLU of gpt-oss (alpha 1.702, limit 7, up + 1: hard-coded in llama.cpp). The norm llama.cpp
calls attn_post_norm is the FFN's pre-norm (post_attention_norm.weight)."""

from __future__ import annotations

from gguf.constants import Keys

from ..config import Config, HParams
from ..weights import Layer, TensorLoader, Weights
from ._base import ArchSpec


class GptOss(ArchSpec):
    name = "gpt-oss"
    rope_neox = True
    moe = True
    types = {24: "20B", 36: "120B"}

    def hparams(self, h: HParams, c: dict) -> None:
        c["n_ff_exp"] = h.scalar(Keys.LLM.EXPERT_FEED_FORWARD_LENGTH, kind=int, required=True)
        self.set_swa(h, c, h.scalar(Keys.Attention.SLIDING_WINDOW, kind=int, required=True), 2)
        c["_swa_rope"] = (float(h.get(Keys.Rope.FREQ_BASE_SWA, c["_base"])), c["_freq_scale"], True)
        c.update(expert_gating="softmax_weight", expert_norm=False, ffn_act="swiglu_oai")

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        E = cfg.n_embd
        layers = self.blocks(cfg, lambda p: Layer(
            attn_norm=t.vector(p + "attn_norm.weight", E), **self.qkv(t, cfg, p),
            wo=t.linear(p + "attn_output.weight", cfg.n_head * cfg.head_dim, E),
            bo=t.vector(p + "attn_output.bias", E), sinks=t.vector(p + "attn_sinks.weight", cfg.n_head),
            ffn_norm=t.vector(p + "post_attention_norm.weight", E), moe=self.experts(t, cfg, p, biases=True)))
        return Weights(**self.head(t, cfg, tied="never"), layers=layers)


SPEC = GptOss()
