"""smollm3 (src/models/smollm3.cpp): llama's block, but every fourth layer (il + 1 divisible by
4) attends without RoPE ("NoPE"). The step is hard-coded in llama.cpp; no GGUF key says it."""

from __future__ import annotations

from ..config import Config, HParams
from ..weights import TensorLoader, Weights
from ._base import ArchSpec

NO_ROPE_LAYER_STEP = 4  # llama_model_smollm3::load_arch_hparams: hparams.n_no_rope_layer_step


class SmolLM3(ArchSpec):
    name = "smollm3"
    types = {36: "3B"}

    def hparams(self, h: HParams, c: dict) -> None:
        c["rope_layers"] = tuple((il + 1) % NO_ROPE_LAYER_STEP != 0 for il in range(c["n_layer"]))

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg), layers=self.llama_layers(t, cfg))


SPEC = SmolLM3()
