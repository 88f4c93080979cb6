"""Text generation: the prompt in micro-batches, then one token at a time through the sampler.

`Generator` ties a model, its tokenizer and a sampler together and keeps llama.cpp's perf
counters (load, prompt eval, eval, sampling), printed by `perf_summary` in llama.cpp's format.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import LlamacliError
from .kernels import cpu
from .grammar.matcher import GrammarError
from .model.transformer import Model, kv_cache_bytes, load_model
from .model.config import config_from_gguf
from .gguf_io import open_gguf
from .sampling import Sampler, SamplerParams
from .tokenizer import load_tokenizer

_ctrl_c_pending = False  # set by the SIGINT handler; see catch_ctrl_c


def _on_sigint(signum, frame) -> None:
    global _ctrl_c_pending
    _ctrl_c_pending = True
    raise KeyboardInterrupt


def catch_ctrl_c() -> None:
    """Make Ctrl+C stick during generation. Python's own handler only raises KeyboardInterrupt,
    and a raise that lands inside a C callback (llvmlite's, while Numba compiles or links a
    cached kernel) is printed as 'Exception ignored' and lost. This handler also leaves a flag
    that the generation loop checks once per token, so a lost raise stops the reply one token
    later. Only from the main thread, where signal handlers live."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def _check_ctrl_c() -> None:
    global _ctrl_c_pending
    if _ctrl_c_pending:
        _ctrl_c_pending = False
        raise KeyboardInterrupt


DEFAULT_CTX = 4096  # llama.cpp's common default for -c
KV_MEMORY_SHARE = 0.5  # -c 0 never lets the KV cache take more than this share of free memory


@dataclass
class Perf:
    t_start: float = field(default_factory=time.perf_counter)
    t_load_ms: float = 0.0
    n_prompt: int = 0
    t_prompt_ms: float = 0.0
    n_eval: int = 0
    t_eval_ms: float = 0.0
    n_sample: int = 0
    t_sample_ms: float = 0.0

    def lines(self) -> list[str]:
        def rate(ms, n):
            return (ms / n if n else 0.0), (1e3 * n / ms if ms > 0 else 0.0)

        total = (time.perf_counter() - self.t_start) * 1e3
        pm, ps = rate(self.t_prompt_ms, self.n_prompt)
        em, es = rate(self.t_eval_ms, self.n_eval)
        f = "llama_perf_context_print"
        return [
            f"llama_perf_sampler_print:    sampling time = {self.t_sample_ms:10.2f} ms / {self.n_sample:5d} runs",
            f"{f}:        load time = {self.t_load_ms:10.2f} ms",
            f"{f}: prompt eval time = {self.t_prompt_ms:10.2f} ms / {self.n_prompt:5d} tokens ({pm:8.2f} ms per token, {ps:8.2f} tokens per second)",
            f"{f}:        eval time = {self.t_eval_ms:10.2f} ms / {self.n_eval:5d} runs   ({em:8.2f} ms per token, {es:8.2f} tokens per second)",
            f"{f}:       total time = {total:10.2f} ms / {self.n_prompt + self.n_eval:5d} tokens",
        ]


def system_info(model: Model) -> str:
    """llama.cpp's system_info line: the threads and the CPU features whose arithmetic the
    kernels follow (the level: kernels.cpu)."""
    level = model.be.level
    return (f"system_info: n_threads = {model.n_threads} | CPU level = {level} : {cpu.FEATURES[level]} | "
            f"(${cpu.ENV} overrides)")


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose_context(path, n_ctx: int) -> tuple[int, str | None]:
    """Resolve -c: 0 means the trained context, capped so the KV cache takes at most half of
    the free memory (a warning says so); an explicit size whose cache cannot fit is refused."""
    gf = open_gguf(path)
    cfg = config_from_gguf(gf)
    free = available_memory()
    if n_ctx < 0:
        raise LlamacliError(f"-c must be >= 0, got {n_ctx}")
    if n_ctx == 0:
        n_ctx = cfg.n_ctx_train
        per_tok = kv_cache_bytes(cfg, 1)
        cap = int(free * KV_MEMORY_SHARE) // per_tok // 256 * 256
        if n_ctx > cap:
            return max(cap, 256), (f"trained context {cfg.n_ctx_train} needs a {kv_cache_bytes(cfg, n_ctx) / 2**20:.0f} MiB "
                                   f"KV cache; capped to {max(cap, 256)} tokens to fit in memory")
        return n_ctx, None
    need = kv_cache_bytes(cfg, n_ctx)
    if need > free:
        raise LlamacliError(f"-c {n_ctx} needs a {need / 2**20:.0f} MiB KV cache but only "
                            f"{free / 2**20:.0f} MiB of memory is available")
    return n_ctx, None


class Generator:
    def __init__(self, path, n_ctx: int = DEFAULT_CTX, n_batch: int = 512, n_threads: int = 2,
                 flash_attn: bool | str = False):
        t0 = time.perf_counter()
        self.perf = Perf(t_start=t0)
        self.model: Model = load_model(path, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                       flash_attn=flash_attn)
        self.tokenizer = load_tokenizer(self.model.gguf)
        self.perf.t_load_ms = (time.perf_counter() - t0) * 1e3

    @property
    def n_ctx(self) -> int:
        return self.model.state.n_ctx

    def tokenize_prompt(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special=True, parse_special=True)

    def check_prompt(self, prompt: list[int]) -> None:
        if not prompt:
            raise LlamacliError("the prompt is empty (and the model adds no BOS token)")
        limit = self.n_ctx - 4  # llama.cpp's llama-cli keeps 4 positions of headroom
        if len(prompt) > limit:
            raise LlamacliError(f"prompt is too long ({len(prompt)} tokens, max {limit})")

    def grammar_state(self, grammar):
        """A fresh matcher state for a CompiledGrammar (None: no grammar), over this vocabulary's
        pieces (built once and shared by every state)."""
        if grammar is None:
            return None
        from .grammar import GrammarState, TokenPieces
        if getattr(self, "_pieces", None) is None:
            self._pieces = TokenPieces(self.tokenizer)
        return GrammarState(grammar, self._pieces)

    def generate(self, prompt: list[int], n_predict: int, params: SamplerParams,
                 ignore_eos: bool = False, on_token: Callable[[int], None] | None = None,
                 grammar=None) -> list[int]:
        """Evaluate the prompt and sample up to n_predict tokens (-1: until end of generation or
        a full context). Returns the generated ids; `on_token` sees each as it is chosen.
        `grammar` (a llamacli.grammar.CompiledGrammar) constrains the picks as llama.cpp's
        grammar sampler; the prompt is not fed to it."""
        self.check_prompt(prompt)
        sampler = Sampler(params, self.model.cfg.n_vocab, grammar=self.grammar_state(grammar))
        self.sampler = sampler
        for t in prompt:
            sampler.accept(t)
        logits = self.eval_prompt(prompt)
        return self.sample_loop(logits, n_predict, sampler, ignore_eos, on_token)

    def eval_prompt(self, tokens: list[int]):
        """Append prompt tokens to the context (counted as prompt eval); the last row's logits."""
        global _ctrl_c_pending
        _ctrl_c_pending = False  # a Ctrl+C already caught, before this prompt began
        t0 = time.perf_counter()
        logits = self.model.eval(tokens, want="last")
        self.perf.t_prompt_ms += (time.perf_counter() - t0) * 1e3
        self.perf.n_prompt += len(tokens)
        return logits

    def sample_loop(self, logits, n_predict: int, sampler: Sampler, ignore_eos: bool = False,
                    on_token: Callable[[int], None] | None = None) -> list[int]:
        """Sample from `logits`, evaluate the pick, repeat: up to n_predict tokens (-1: no limit),
        an end-of-generation token (not returned) or a full context (`context_full` is set).
        The last returned token is not evaluated when the loop ends on n_predict or the context."""
        perf = self.perf
        self.context_full = False
        out: list[int] = []
        while n_predict < 0 or len(out) < n_predict:
            _check_ctrl_c()
            t0 = time.perf_counter()
            tok = sampler.sample(logits[0])
            try:
                sampler.accept(tok, generated=True)
            except GrammarError as e:  # llama.cpp throws here: the grammar has no way on
                raise LlamacliError(f"grammar: {e}") from None
            perf.t_sample_ms += (time.perf_counter() - t0) * 1e3
            perf.n_sample += 1
            if not ignore_eos and self.tokenizer.is_eog(tok):
                break
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            if n_predict >= 0 and len(out) >= n_predict:
                break
            if self.model.state.n_past + 1 > self.n_ctx:
                self.context_full = True
                break
            t0 = time.perf_counter()
            logits = self.model.eval([tok], want="last")
            perf.t_eval_ms += (time.perf_counter() - t0) * 1e3
            perf.n_eval += 1
        return out
