"""gemma3 (src/models/gemma3.cpp): embeddings times sqrt(n_embd), q/k head norms, norms before
and after attention and FFN, GeGLU, q scaled after RoPE, and (when the file sets a window)
sliding-window attention on five layers of six with their own RoPE base."""

from __future__ import annotations

import math

import numpy as np
from gguf.constants import Keys

from ..config import Config, HParams, f32_inv_sqrt
from ..weights import TensorLoader, Weights
from ._base import ArchSpec


class Gemma3(ArchSpec):
    name = "gemma3"
    rope_neox = True
    types = {18: "270M", 26: "1B", 32: "8B", 34: "4B", 48: "12B", 62: "27B"}

    def hparams(self, h: HParams, c: dict) -> None:
        window = int(h.get(Keys.Attention.SLIDING_WINDOW, 0) or 0)
        if window > 0:
            self.set_swa(h, c, window, 6)
            # the SWA layers take rope.freq_base_swa (default 10000) with freq_scale 1
            c["_swa_rope"] = (float(h.get(Keys.Rope.FREQ_BASE_SWA, 10000.0)), 1.0, True)
        c["final_softcap"] = float(h.get(Keys.LLM.FINAL_LOGIT_SOFTCAPPING, 0.0) or 0.0)
        # 27B scales by n_embd / n_head, the others by the head width (gemma_pytorch config)
        n = c["n_embd"] // c["n_head"] if c["n_layer"] == 62 else c["head_dim"]
        c.update(attn_scale=f32_inv_sqrt(n), scale_q=True, qk_norm="head", ffn_act="gelu",
                 embed_scale=float(np.float32(math.sqrt(c["n_embd"]))), _n_rot_must_match=False)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        return Weights(**self.head(t, cfg),
                       layers=self.llama_layers(t, cfg, post_norms=True, qk_norm=cfg.head_dim))


SPEC = Gemma3()
