"""phi3 (src/models/phi3.cpp): q, k and v fused in attn_qkv (or split), gate and up fused in one
ffn_up of 2 n_ff rows (SwiGLU over its halves), NeoX RoPE with LongRoPE's short and long factor
tensors and attention factor, q scaled after RoPE. llama.cpp turns Phi's sliding window off
(llama.cpp PR 13676), and so does llamacli."""

from __future__ import annotations

import sys

from gguf.constants import Keys

from ..config import Config, HParams, f32_inv_sqrt
from ..weights import Layer, TensorLoader, Weights
from ._base import ArchSpec


class Phi3(ArchSpec):
    name = "phi3"
    rope_neox = True
    types = {24: "1B", 32: "3B", 40: "14B"}

    def hparams(self, h: HParams, c: dict) -> None:
        # a sliding window in the file is ignored by llama.cpp, with a warning
        if int(h.get(Keys.Attention.SLIDING_WINDOW, 0) or 0) > 0:
            print("llamacli: warning: Phi SWA is disabled, as in llama.cpp (results may differ from the "
                  "model's training for long contexts)", file=sys.stderr)
        c.update(attn_scale=f32_inv_sqrt(c["head_dim"]), scale_q=True, _n_rot_must_match=False)

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        E, F = cfg.n_embd, cfg.n_ff
        layers = self.blocks(cfg, lambda p: Layer(
            attn_norm=t.vector(p + "attn_norm.weight", E), **self.qkv(t, cfg, p, n_q=E),
            wo=t.linear(p + "attn_output.weight", E, E), ffn_norm=t.vector(p + "ffn_norm.weight", E),
            w_up=t.linear(p + "ffn_up.weight", E, 2 * F), w_down=t.linear(p + "ffn_down.weight", F, E)))
        return Weights(**self.head(t, cfg), layers=layers,
                       **self.rope_factor_tensors(t, cfg))


SPEC = Phi3()
