"""olmo2 (src/models/olmo2.cpp, OLMo 2 and 3): no norms before attention or FFN, only after
them; q and k normed over their whole projections (n_embd and n_embd_k wide) before RoPE; an
untied head. OLMo 3 files add sliding-window attention on three layers of four, whose RoPE is
unscaled."""

from __future__ import annotations

from gguf.constants import Keys

from ..config import Config, HParams
from ..weights import Layer, TensorLoader, Weights
from ._base import ArchSpec


class Olmo2(ArchSpec):
    name = "olmo2"
    rope_neox = True
    types = {16: "1B", 32: "7B", 40: "13B", 64: "32B"}

    def hparams(self, h: HParams, c: dict) -> None:
        window = int(h.get(Keys.Attention.SLIDING_WINDOW, 0) or 0)
        if window > 0:
            self.set_swa(h, c, window, 4)
            # the SWA layers rotate with the global base, freq_scale 1 and no YaRN (olmo2.cpp)
            c["_swa_rope"] = (c["_base"], 1.0, False)
        c["qk_norm"] = "full"

    def tensors(self, t: TensorLoader, cfg: Config) -> Weights:
        E = cfg.n_embd
        layers = self.blocks(cfg, lambda p: Layer(
            **self.qkv(t, cfg, p, n_q=E), wo=t.linear(p + "attn_output.weight", E, E),
            q_norm=t.vector(p + "attn_q_norm.weight", E), k_norm=t.vector(p + "attn_k_norm.weight", cfg.n_embd_k),
            post_attn_norm=t.vector(p + "post_attention_norm.weight", E),
            **self.ffn(t, cfg, p), post_ffn_norm=t.vector(p + "post_ffw_norm.weight", E)))
        return Weights(**self.head(t, cfg, tied="never"), layers=layers)


SPEC = Olmo2()
