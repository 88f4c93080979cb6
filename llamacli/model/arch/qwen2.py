"""qwen2 (src/models/qwen2.cpp): llama's block with q/k/v biases and NeoX RoPE."""

from __future__ import annotations

from ..config import Config
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Qwen2(ArchSpec):
    name = "qwen2"
    rope_neox = True
    types = {32: "7B", 36: "3B", 48: "14B", 64: "32B", 80: "70B"}

    def type_name(self, c: dict) -> str:
        n, E = c["n_layer"], c["n_embd"]
        if n == 24:
            return "0.5B" if E == 1024 else "1B"
        if n == 28:
            return "1.5B" if E == 1536 else "7B"
        if n == 40:
            return "4B" if c["n_head"] == 20 else "13B"
        return super().type_name(c)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg, output_bias=True), layers=self.llama_layers(t, cfg))


SPEC = Qwen2()
