"""The server's engine: parallel slots decoded together, as llama-server's update_slots.

One thread owns the model. Each step it admits waiting tasks into idle slots, then builds one
batch for `Model.eval_seqs`: the last sampled token of every generating slot, and as many
prompt tokens of the slots still reading their prompt as the batch has room for. Each slot
has its own KV cache, and keeps the tokens whose rows it holds, so the next task it takes
reuses the common prefix (llama-server's cache_prompt) and evaluates only the rest.

Tasks come from the HTTP side through `submit` (a bounded queue: past it, `Busy`) and report
back through a callback that the HTTP side points at its event loop. Every sampler, grammar
and stop-string check is the one `run` uses (llamacli.sampling, llamacli.grammar). A task
whose client went away is cancelled and its slot freed before the next step.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import LlamacliError
from ..generate import Generator
from ..grammar.matcher import GrammarError
from ..model.transformer import KVCache
from ..sampling import Sampler, SamplerParams


CANCELLED = ("cancelled", "the client went away")


class Busy(Exception):
    """The slots are taken and the queue is full (HTTP 503)."""


@dataclass
class TaskParams:
    sampling: SamplerParams
    n_predict: int = -1  # -1: until end of generation or a full context
    stop: tuple[str, ...] = ()
    n_probs: int = 0  # top tokens to report with each pick (logprobs)
    ignore_eos: bool = False
    grammar: object = None  # a llamacli.grammar.CompiledGrammar


@dataclass
class Token:
    """One generated token as the HTTP side sees it: `text` is what may be sent now (a
    possible start of a stop string is held back until it is resolved)."""
    id: int
    text: str
    probs: dict | None = None  # {"id", "token", "bytes", "logprob", "top_logprobs"} if asked for


@dataclass
class Result:
    """How a task ended (llama-server's server_task_result_cmpl_final, the fields we keep)."""
    content: str
    tokens: list[int]
    stop_type: str  # "eos" | "word" | "limit"
    stopping_word: str
    truncated: bool  # the context filled up
    n_prompt: int
    n_cached: int
    t_prompt_ms: float
    t_gen_ms: float
    id_slot: int
    probs: list[dict]

    @property
    def finish_reason(self) -> str:
        return "stop" if self.stop_type in ("eos", "word") else "length"

    def timings(self) -> dict:
        n_eval, n_gen = self.n_prompt - self.n_cached, len(self.tokens)

        def per(ms, n):
            return (ms / n if n else 0.0), (1e3 * n / ms if ms > 0 else 0.0)

        pt, ps = per(self.t_prompt_ms, n_eval)
        gt, gs = per(self.t_gen_ms, n_gen)
        return {"cache_n": self.n_cached, "prompt_n": n_eval, "prompt_ms": self.t_prompt_ms,
                "prompt_per_token_ms": pt, "prompt_per_second": ps, "predicted_n": n_gen,
                "predicted_ms": self.t_gen_ms, "predicted_per_token_ms": gt, "predicted_per_second": gs}


@dataclass
class Task:
    prompt: list[int]
    params: TaskParams
    # called from the engine thread: ("token", Token), ("done", Result) or ("error", message)
    emit: Callable[[str, object], None]
    cancelled: bool = False
    id: int = 0

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Metrics:
    """llama-server's /metrics counters."""
    n_prompt_tokens: int = 0  # evaluated, the cached prefix not counted
    n_prompt_cached: int = 0
    t_prompt_s: float = 0.0
    n_predicted: int = 0
    t_predict_s: float = 0.0
    n_decode: int = 0  # model steps
    n_busy_slots: int = 0  # summed over the steps
    n_tokens_max: int = 0  # longest sequence seen
    n_requests: int = 0


class Slot:
    """One sequence of the server: its KV cache, the tokens it holds, and the task it runs."""

    def __init__(self, sid: int, cache: KVCache):
        self.id, self.cache = sid, cache
        self.cached: list[int] = []  # tokens whose K/V rows the cache holds, in position order
        self.task: Task | None = None
        self.t_used = 0.0  # when it last took a task (the least recently used one goes first)

    def common_prefix(self, prompt: list[int]) -> int:
        n, limit = 0, min(len(self.cached), len(prompt))
        while n < limit and self.cached[n] == prompt[n]:
            n += 1
        return n

    # -- the running task's state --------------------------------------------------------

    def start(self, task: Task, gen: Generator) -> None:
        """Keep the prefix the cache shares with the prompt (at least the prompt's last token
        is evaluated: its logits give the first pick) and set the task's sampler going."""
        keep = min(self.common_prefix(task.prompt), len(task.prompt) - 1)
        self.cache.truncate(min(keep, self.cache.n_past))
        self.cached = self.cached[:self.cache.n_past]
        self.task, self.t_used = task, time.perf_counter()
        self.n_cached = self.cache.n_past
        self.pending = task.prompt[self.cache.n_past:]  # prompt tokens still to evaluate
        p = task.params
        self.sampler = Sampler(p.sampling, gen.model.cfg.n_vocab, grammar=gen.grammar_state(p.grammar))
        for t in task.prompt:
            self.sampler.accept(t)
        self.decoder = gen.tokenizer.stream_decoder()
        self.generated: list[int] = []
        self.text, self.sent = "", 0  # the reply so far, and how much of it went out
        self.probs: list[dict] = []
        self.last: int | None = None  # the last pick, evaluated next step
        self.t_start, self.t_first = time.perf_counter(), None

    def release(self) -> None:
        self.task = None


class Engine:
    def __init__(self, gen: Generator, n_parallel: int, max_queue: int = 64):
        self.gen, self.model, self.tok = gen, gen.model, gen.tokenizer
        self.n_ctx = gen.n_ctx  # of each slot
        # the State's own cache is slot 0's; the others get caches of the same size
        self.slots = [Slot(i, self.model.state if i == 0 else self.model.new_cache()) for i in range(n_parallel)]
        self.max_queue = max_queue
        self.waiting: deque[Task] = deque()
        self.metrics = Metrics()
        self._cv = threading.Condition()
        self._stopping = False
        self._draining = False
        self._next_id = 0
        self._thread = threading.Thread(target=self._run, name="llamacli-engine", daemon=True)

    # -- the HTTP side ----------------------------------------------------------------------

    def start(self) -> None:
        self._warm_up()
        self._thread.start()

    def _warm_up(self) -> None:
        """A prompt step and a decode step over two sequences before serving, so that the first
        request does not pay for loading the compiled kernels (llama-server's warm-up run)."""
        caches = [s.cache for s in self.slots[:2]]
        self.model.eval_seqs([(c, [0, 0]) for c in caches])
        self.model.eval_seqs([(c, [0]) for c in caches])
        for c in caches:
            c.reset()

    def submit(self, task: Task) -> None:
        with self._cv:
            if self._draining:
                raise Busy("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise Busy(f"all {len(self.slots)} slots are busy and {len(self.waiting)} requests wait")
            self._next_id += 1
            task.id = self._next_id
            self.waiting.append(task)
            self._cv.notify()

    def wake(self) -> None:
        """A task was cancelled: let the engine see it even while it is idle."""
        with self._cv:
            self._cv.notify()

    def drain(self) -> None:
        """SIGTERM: refuse new tasks, end the running ones at their next token (finish_reason
        'length', so each stream closes properly), and drop the queued ones."""
        with self._cv:
            self._draining = True
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._draining = True
            self._cv.notify()
        self._thread.join(timeout=30)

    @property
    def n_processing(self) -> int:
        return sum(s.task is not None for s in self.slots)

    @property
    def n_deferred(self) -> int:
        return len(self.waiting)

    # -- the engine thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                with self._cv:
                    while not self._stopping and not self.waiting and not any(s.task for s in self.slots):
                        self._cv.wait()
                    if self._stopping and not any(s.task for s in self.slots):
                        break
                    if self._draining:
                        while self.waiting:
                            self.waiting.popleft().emit("error", ("unavailable", "the server is shutting down"))
                    else:
                        self._admit()
                self._step()
            except Exception as e:  # a bug: fail the tasks in flight, keep serving
                for s in self.slots:
                    if s.task is not None:
                        task = s.task
                        s.release()
                        s.cache.reset()
                        s.cached = []
                        task.emit("error", ("server", f"{type(e).__name__}: {e}"))

    def _admit(self) -> None:
        """Give each waiting task an idle slot: the one whose cache shares the longest prefix
        with its prompt, else the least recently used (llama-server's get_available_slot)."""
        while self.waiting:
            task = self.waiting[0]
            if task.cancelled:
                self.waiting.popleft().emit("error", CANCELLED)
                continue
            idle = [s for s in self.slots if s.task is None]
            if not idle:
                return
            self.waiting.popleft()
            best = max(idle, key=lambda s: (s.common_prefix(task.prompt), -s.t_used))
            best.start(task, self.gen)
            self.metrics.n_requests += 1

    def _step(self) -> None:
        m = self.metrics
        for s in self.slots:
            if s.task is not None and s.task.cancelled:
                task = s.task
                if s.t_first is not None:
                    m.t_predict_s += time.perf_counter() - s.t_first
                s.release()
                task.emit("error", CANCELLED)  # the handler waiting on it (if any) ends too
        active = [s for s in self.slots if s.task is not None]
        if not active:
            return
        # one row a generating slot (its last pick), then prompt tokens while there is room
        rows: list[tuple[Slot, list[int], bool]] = [(s, [s.last], True) for s in active if s.last is not None]
        room = self.model.state.n_batch - len(rows)
        for s in active:
            if s.last is None and s.pending and room > 0:
                chunk, s.pending = s.pending[:room], s.pending[room:]
                room -= len(chunk)
                rows.append((s, chunk, not s.pending))  # the prompt's last token gives the first pick
        m.n_decode += 1
        m.n_busy_slots += len(active)
        logits = self.model.eval_seqs([(s.cache, toks) for s, toks, _ in rows])
        now = time.perf_counter()
        for i, (s, toks, picks) in enumerate(rows):
            s.cached.extend(toks)
            m.n_tokens_max = max(m.n_tokens_max, s.cache.n_past)
            if s.t_first is None:
                m.n_prompt_tokens += len(toks)
            if picks:
                self._pick(s, logits[i], now)

    def _pick(self, s: Slot, logits: np.ndarray, now: float) -> None:
        """Sample the slot's next token from its logits; emit it, or end the task."""
        task, p = s.task, s.task.params
        if s.t_first is None:  # the prompt is done
            s.t_first = now
            self.metrics.t_prompt_s += now - s.t_start
            self.metrics.n_prompt_cached += s.n_cached
            if p.n_predict == 0:
                self._finish(s, "limit")
                return
        try:
            tok = s.sampler.sample(logits)
            s.sampler.accept(tok, generated=True)
        except GrammarError as e:
            s.release()
            task.emit("error", ("invalid_request", f"grammar: {e}"))
            return
        if not p.ignore_eos and self.tok.is_eog(tok):
            self._finish(s, "eos")
            return
        s.generated.append(tok)
        self.metrics.n_predicted += 1
        probs = token_probs(logits, tok, p.n_probs, self.tok) if p.n_probs > 0 else None
        if probs is not None:
            s.probs.append(probs)
        s.text += s.decoder.feed(tok)
        word, at, hold = find_stop(s.text, p.stop, s.sent)
        if word is not None:
            s.text = s.text[:at]
            task.emit("token", Token(tok, s.text[s.sent:], probs))
            s.sent = len(s.text)
            self._finish(s, "word", word)
            return
        end = len(s.text) - hold
        task.emit("token", Token(tok, s.text[s.sent:end], probs))
        s.sent = max(s.sent, end)
        if (p.n_predict >= 0 and len(s.generated) >= p.n_predict) or self._draining:
            self._finish(s, "limit")
        elif s.cache.n_past + 1 > self.n_ctx:
            self._finish(s, "limit", truncated=True)
        else:
            s.last = tok

    def _finish(self, s: Slot, stop_type: str, word: str = "", truncated: bool = False) -> None:
        task = s.task
        now = time.perf_counter()
        if stop_type != "word":
            s.text += s.decoder.flush()
        if s.sent < len(s.text):  # what a stop string's possible start held back
            task.emit("token", Token(-1, s.text[s.sent:], None))
        t_first = s.t_first if s.t_first is not None else now
        self.metrics.t_predict_s += now - t_first
        s.release()  # before the answer goes out: a client that sees it finds the slot free
        task.emit("done", Result(content=s.text, tokens=list(s.generated), stop_type=stop_type, stopping_word=word,
                                 truncated=truncated, n_prompt=len(task.prompt), n_cached=s.n_cached,
                                 t_prompt_ms=(t_first - s.t_start) * 1e3, t_gen_ms=(now - t_first) * 1e3,
                                 id_slot=s.id, probs=s.probs))


def find_stop(text: str, stops: tuple[str, ...], sent: int) -> tuple[str | None, int, int]:
    """(stop word, where it starts, 0) if one occurs in text (only text after `sent - longest`
    can hold a new one); else (None, 0, how many trailing characters could start one)."""
    if not stops:
        return None, 0, 0
    longest = max(len(w) for w in stops)
    base = max(0, sent - longest)
    first = None
    for w in stops:
        i = text.find(w, base)
        if i >= 0 and (first is None or i < first[1]):
            first = (w, i)
    if first is not None:
        return first[0], first[1], 0
    hold = 0
    for w in stops:
        for n in range(min(len(w) - 1, len(text)), hold, -1):
            if text.endswith(w[:n]):
                hold = n
                break
    return None, 0, hold


def token_probs(logits: np.ndarray, tok: int, n: int, tokenizer) -> dict:
    """The picked token's log-probability and the n most likely tokens', from a softmax of
    the raw logits (llama-server's populate_token_probs with post_sampling_probs off)."""
    lg = logits.astype(np.float64)
    logz = lg.max() + np.log(np.exp(lg - lg.max()).sum())
    n = min(n, lg.shape[0])
    top = np.argpartition(-lg, n - 1)[:n]
    top = top[np.lexsort((top, -lg[top]))]

    def entry(t: int) -> dict:
        piece = tokenizer.token_to_piece(int(t), special=True)
        return {"id": int(t), "token": piece.decode("utf-8", errors="ignore"), "bytes": list(piece),
                "logprob": float(lg[t] - logz)}

    out = entry(tok)
    out["top_logprobs"] = [entry(t) for t in top]
    return out


def load_engine(path, n_ctx: int, n_parallel: int, n_batch: int, n_threads: int, max_queue: int,
                flash_attn: bool | str = False) -> Engine:
    if n_parallel < 1:
        raise LlamacliError(f"-np must be at least 1, got {n_parallel}")
    gen = Generator(path, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads, flash_attn=flash_attn)
    return Engine(gen, n_parallel, max_queue)
