"""gemma2 (src/models/gemma2.cpp): gemma3's sandwich norms, GeGLU and embedding scale without
the q/k norms; sliding-window attention on alternate layers (window 4096 unless the file says
otherwise), and tanh soft-capping of the attention scores and of the final logits. The head is
always the token embedding."""

from __future__ import annotations

import math

import numpy as np
from gguf.constants import Keys

from ..config import Config, HParams, f32_inv_sqrt
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Gemma2(ArchSpec):
    name = "gemma2"
    rope_neox = True
    types = {26: "2B", 42: "9B", 46: "27B"}

    def hparams(self, h: HParams, c: dict) -> None:
        self.set_swa(h, c, int(h.get(Keys.Attention.SLIDING_WINDOW, 4096)), 2)
        c["_swa_rope"] = (float(h.get(Keys.Rope.FREQ_BASE_SWA, c["_base"])), c["_freq_scale"], True)
        c["attn_softcap"] = float(h.get(Keys.LLM.ATTN_LOGIT_SOFTCAPPING, 50.0))
        c["final_softcap"] = float(h.get(Keys.LLM.FINAL_LOGIT_SOFTCAPPING, 30.0))
        n = c["n_embd"] // c["n_head"] if c["n_layer"] == 46 else c["head_dim"]
        c.update(attn_scale=f32_inv_sqrt(n), scale_q=True, ffn_act="gelu",
                 embed_scale=float(np.float32(math.sqrt(c["n_embd"]))), _n_rot_must_match=False)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg, tied="always"), layers=self.llama_layers(t, cfg, post_norms=True))


SPEC = Gemma2()
