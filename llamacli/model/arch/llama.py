"""llama (src/models/llama.cpp): Llama 1-3, Mistral, SmolLM2 and many fine-tunes. RMSNorm,
SwiGLU, normal (adjacent-pair) RoPE with Llama 3's frequency factors or LongRoPE's, optional
attention-output and FFN biases, tied or untied head; Mixtral's experts (softmax over all,
top-k, renormalised) where the file has an expert count."""

from __future__ import annotations

from ..config import Config, HParams
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Llama(ArchSpec):
    name = "llama"
    types = {16: "1B", 22: "1B", 26: "3B", 28: "3B", 30: "256M", 36: "8B", 40: "13B", 48: "34B", 60: "30B"}
    moe = True

    def hparams(self, h: HParams, c: dict) -> None:
        if c["n_expert"]:
            c.update(n_ff_exp=c["n_ff"], expert_norm=True)  # build_moe_ffn(..., LLM_FFN_SILU, norm_w = true)

    def type_name(self, c: dict) -> str:
        if c["n_expert"] == 8:
            return {32: "8x7B", 56: "8x22B"}.get(c["n_layer"], "?B")
        if c["n_layer"] == 32:  # granite uses a vocab of 49152
            return "3B" if c["n_vocab"] == 49152 else ("7B" if c["n_vocab"] < 40000 else "8B")
        if c["n_layer"] == 80:
            return "65B" if c["n_head"] == c["n_head_kv"] else "70B"
        return super().type_name(c)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg), layers=self.llama_layers(t, cfg, biases=True),
                       **self.rope_factor_tensors(t, cfg))


SPEC = Llama()
