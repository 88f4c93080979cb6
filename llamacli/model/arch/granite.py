"""granite (src/models/granite.cpp): llama's block with four multipliers: the embeddings, the
attention scale, each block's residual branches, and the logits (divided by logit_scale). Its
rope.scaling.finetuned key switches RoPE off for every layer when false."""

from __future__ import annotations

from gguf.constants import Keys

from ..config import Config, HParams
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Granite(ArchSpec):
    name = "granite"
    types = {32: "3B"}

    def hparams(self, h: HParams, c: dict) -> None:
        c["logit_scale"] = float(h.require(Keys.LLM.LOGIT_SCALE))
        c["residual_scale"] = float(h.get(Keys.LLM.RESIDUAL_SCALE, 0.0))
        c["embed_scale"] = float(h.get(Keys.LLM.EMBEDDING_SCALE, 0.0)) or 1.0
        c["attn_scale"] = float(h.get(Keys.Attention.SCALE, 0.0)) or c["attn_scale"]
        h.refuse("{arch}.deepstack_mapping", "Granite Vision's deepstack inputs are not supported")
        h.refuse(Keys.LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH, "shared experts are not supported")
        rope_on = bool(h.get(Keys.Rope.SCALING_FINETUNED, True))  # granite defaults it to true
        c["rope_layers"] = (rope_on,) * c["n_layer"]

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg), layers=self.llama_layers(t, cfg, biases=True),
                       **self.rope_factor_tensors(t, cfg))


SPEC = Granite()
