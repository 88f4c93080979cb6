"""olmoe (src/models/olmoe.cpp): OLMo's q/k norms over the whole projections (both n_embd
wide), pre-norms, an untied head, and experts chosen by softmax and top-k whose weights are
not renormalised."""

from __future__ import annotations

from ..config import Config, HParams
from ..weights import Layer, TensorLoader, Weights
from ._base import ArchSpec


class OlMoE(ArchSpec):
    name = "olmoe"
    rope_neox = True
    moe = True
    types = {16: "A1.7B"}

    def hparams(self, h: HParams, c: dict) -> None:
        self.require_experts(h, c)
        c.update(qk_norm="full", n_ff_exp=c["n_ff"], expert_norm=False)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        E = cfg.n_embd
        layers = self.blocks(cfg, lambda p: Layer(
            attn_norm=t.vector(p + "attn_norm.weight", E), **self.qkv(t, cfg, p, n_q=E),
            wo=t.linear(p + "attn_output.weight", E, E),
            q_norm=t.vector(p + "attn_q_norm.weight", E), k_norm=t.vector(p + "attn_k_norm.weight", E),
            ffn_norm=t.vector(p + "ffn_norm.weight", E), moe=self.experts(t, cfg, p)))
        return Weights(**self.head(t, cfg, tied="never"), layers=layers)


SPEC = OlMoE()
