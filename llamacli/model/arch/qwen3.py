"""qwen3 (src/models/qwen3.cpp): qwen2 without biases, with an RMSNorm of every q and k head
before RoPE."""

from __future__ import annotations

from ..config import Config, HParams
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Qwen3(ArchSpec):
    name = "qwen3"
    rope_neox = True
    types = {40: "14B", 64: "32B"}

    def type_name(self, c: dict) -> str:
        n, E = c["n_layer"], c["n_embd"]
        if n == 28:
            return "0.6B" if E == 1024 else "1.7B"
        if n == 36:
            return "4B" if E == 2560 else "8B"
        return super().type_name(c)

    def hparams(self, h: HParams, c: dict) -> None:
        c["qk_norm"] = "head"

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg), layers=self.llama_layers(t, cfg, qk_norm=cfg.head_dim))


SPEC = Qwen3()
