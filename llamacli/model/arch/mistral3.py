"""mistral3 (src/models/mistral3.cpp): llama's block with YaRN read from the file (beta fast and
slow, the log multiplier of its magnitude) and Llama 4's temperature tuning of q by position:
q *= 1 + temperature_scale * ln(floor(pos / n_ctx_orig) + 1)."""

from __future__ import annotations

from gguf.constants import Keys

from ...errors import LlamacliError
from ..config import Config, HParams
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Mistral3(ArchSpec):
    name = "mistral3"
    types = {26: "3B", 34: "8B", 40: "14B"}

    def hparams(self, h: HParams, c: dict) -> None:
        y = c["_yarn"]
        y["beta_fast"] = float(h.get(Keys.Rope.SCALING_YARN_BETA_FAST, y["beta_fast"]))
        y["beta_slow"] = float(h.get(Keys.Rope.SCALING_YARN_BETA_SLOW, y["beta_slow"]))
        y["log_mul"] = float(h.get(Keys.Rope.SCALING_YARN_LOG_MUL, 0.0))
        c["attn_temp_scale"] = float(h.get(Keys.Attention.TEMPERATURE_SCALE, 0.0))
        if c["attn_temp_scale"]:
            c["attn_temp_floor"] = c["n_ctx_orig_yarn"]
            if not c["attn_temp_floor"]:
                raise LlamacliError(f"{h.path}: invalid n_ctx_orig_yarn for attention temperature scaling")

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg), layers=self.llama_layers(t, cfg, biases=True),
                       **self.rope_factor_tensors(t, cfg))


SPEC = Mistral3()
