"""qwen3moe (src/models/qwen3moe.cpp): qwen3's attention (q/k head norms) over a mixture-of-
experts FFN: softmax over the router logits, top-k, the chosen weights renormalised."""

from __future__ import annotations

from gguf.constants import Keys

from ..config import Config, HParams
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Qwen3Moe(ArchSpec):
    name = "qwen3moe"
    rope_neox = True
    moe = True
    types = {48: "30B.A3B", 94: "235B.A22B"}

    def hparams(self, h: HParams, c: dict) -> None:
        self.require_experts(h, c)
        n_ff_exp = h.scalar(Keys.LLM.EXPERT_FEED_FORWARD_LENGTH, 0, kind=int)
        c.update(qk_norm="head", n_ff_exp=n_ff_exp or c["n_ff"] // c["n_expert_used"], expert_norm=True)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg), layers=self.llama_layers(t, cfg, qk_norm=cfg.head_dim))


SPEC = Qwen3Moe()
