"""Per-layer, per-operation timing of one decode step and one prefill batch.

The engine is not changed: `Profiler` is a context manager that, while it is open, replaces
the operations of the model's backend (`model.be`, the seam the graph calls through), the
model's `_embed`, and `load` / `matmul` of each of the model's `Activation` objects with timing
wrappers, and puts the originals back on exit. With profiling off the decode path is
byte for byte the code that runs without it.

Calls are mapped to layers without counting: a matmul is known by its weight rows (each
`Linear` of each block is a distinct array), an RMSNorm by its weight vector (`attn_norm` of
block i starts block i), and every other call belongs to the block whose norm ran last.
What the wrappers cannot see (NumPy glue in the graph such as biases and the Gemma-3 q
scale, `eval`'s checks, the wrappers' own cost) is reported as unattributed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .errors import LlamacliError

# display order of the operations
OPS = ["embed", "rope_cache", "attn_norm", "act_quant", "qkv_proj", "q_proj", "k_proj", "v_proj", "qk_norm", "rope",
       "store_kv", "q_to_f16", "attention", "o_proj", "post_attn_norm", "residual", "ffn_norm", "gate", "up",
       "glu", "down", "router", "moe_route", "expert_gate", "expert_up", "expert_down", "moe_glue", "post_ffn_norm",
       "output_norm", "output", "sampling", "profiler"]

# Linear field of a block -> op name
_LINEAR_OPS = {"wqkv": "qkv_proj", "wq": "q_proj", "wk": "k_proj", "wv": "v_proj", "wo": "o_proj",
               "w_gate": "gate", "w_up": "up", "w_down": "down"}
_NORM_OPS = {"attn_norm": "attn_norm", "ffn_norm": "ffn_norm", "post_attn_norm": "post_attn_norm",
             "post_ffn_norm": "post_ffn_norm", "q_norm": "qk_norm", "k_norm": "qk_norm"}
_MOE_GLUE = ("group_by_expert", "gather_rows", "add_bias_rows", "scatter_weighted", "sum_slots")
INPUT, SAMPLING, PROFILER = -1, -2, -3  # pseudo layers; the output head is layer n_layer


class Profiler:
    """Open it around `model.eval`; `records` maps (layer, op) to [ns, calls, bytes, flops].

    Each wrapped call appends one tuple to a list and little else, so that the wrappers' own
    cost stays small against the work they time."""

    def __init__(self, model):
        self.model = model
        cfg, W = model.cfg, model.weights
        self.n_layer = cfg.n_layer
        self.by_rows: dict[int, tuple[int, str]] = {}  # id(weight rows) -> (layer, op)
        self.by_norm: dict[int, tuple[int, str]] = {}  # id(norm weight) -> (layer, op)
        for il, L in enumerate(W.layers):
            for f, op in _LINEAR_OPS.items():
                if getattr(L, f) is not None:
                    self.by_rows[id(getattr(L, f).rows)] = (il, op)
            if L.moe is not None:  # the router, and every expert's rows (views of the 3-D tensors)
                self.by_rows[id(L.moe.gate_inp.rows)] = (il, "router")
                for f in ("gate", "up", "down"):
                    for w in getattr(L.moe, f) or ():
                        self.by_rows[id(w.rows)] = (il, "expert_" + f)
            for f, op in _NORM_OPS.items():
                v = getattr(L, f)
                if v is not None:
                    self.by_norm[id(v)] = (il, op)
        self.by_rows[id(W.output.rows)] = (cfg.n_layer, "output")
        self.by_norm[id(W.output_norm)] = (cfg.n_layer, "output_norm")
        self.log: list[tuple] = []  # (layer, op, ns, bytes, flops), one per wrapped call
        self.cur = [INPUT]  # the block whose norm ran last
        self._saved: list = []

    # -- bookkeeping ------------------------------------------------------------------------

    def add(self, layer: int, op: str, ns: int, nbytes: int = 0, flops: int = 0) -> None:
        self.log.append((layer, op, ns, nbytes, flops))

    def clear(self) -> None:
        self.log.clear()
        self.cur[0] = INPUT

    @property
    def records(self) -> dict[tuple[int, str], list[int]]:
        out: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for layer, op, ns, nb, fl in self.log:
            r = out[(layer, op)]
            r[0] += ns
            r[1] += 1
            r[2] += nb
            r[3] += fl
        return out

    # -- the wrappers ---------------------------------------------------------------------------

    def _simple(self, fn, op, layer=None):
        clock, log, cur = time.perf_counter_ns, self.log, self.cur

        if layer is None:
            def w(*a):
                t0 = clock()
                r = fn(*a)
                log.append((cur[0], op, clock() - t0, 0, 0))
                return r
        else:
            def w(*a):
                t0 = clock()
                r = fn(*a)
                log.append((layer, op, clock() - t0, 0, 0))
                return r
        return w

    def _norm(self, fn):
        clock, log, cur, by_norm = time.perf_counter_ns, self.log, self.cur, self.by_norm

        def w(x, wt, *a):
            t0 = clock()
            r = fn(x, wt, *a)
            dt = clock() - t0
            key = by_norm.get(id(wt))
            if key is None:
                log.append((cur[0], "rms_norm", dt, 0, 0))
            else:
                if key[1] == "attn_norm" or key[1] == "output_norm":
                    cur[0] = key[0]  # a block (or the head) starts with its norm
                log.append((key[0], key[1], dt, 0, 0))
            return r
        return w

    def _attention(self, fn):
        clock, log, cur = time.perf_counter_ns, self.log, self.cur

        def w(q, ck, cvt, pos, n_kv, scale, window, softcap, sinks, scratch, out):
            t0 = clock()
            r = fn(q, ck, cvt, pos, n_kv, scale, window, softcap, sinks, scratch, out)
            dt = clock() - t0
            T, n_head, hd = q.shape
            if window:
                vis = int(np.minimum(pos[:T] + 1, window).sum())
            else:
                vis = T * int(pos[0]) + T * (T + 1) // 2  # query t sees p0 + t + 1 keys
            hd_v = out.shape[1] // n_head
            kv_bytes = n_kv * (ck.shape[1] + cvt.shape[0]) * ck.itemsize  # the fp16 K and V read
            log.append((cur[0], "attention", dt, kv_bytes, 2 * n_head * (hd + hd_v) * vis))
            return r
        return w

    def _flash_attn(self, fn):
        """kernels.flash, logged as "attention" too: the same work over the V rows."""
        clock, log, cur = time.perf_counter_ns, self.log, self.cur

        def w(q, ck, cv, pos, n_kv, *rest):
            t0 = clock()
            r = fn(q, ck, cv, pos, n_kv, *rest)
            dt = clock() - t0
            T, n_head, hd = q.shape
            window = rest[3]  # after graph_kv, nth, scale
            if window:
                vis = int(np.minimum(pos[:T] + 1, window).sum())
            else:
                vis = T * int(pos[0]) + T * (T + 1) // 2
            kv_bytes = n_kv * (ck.shape[1] + cv.shape[1]) * ck.itemsize
            log.append((cur[0], "attention", dt, kv_bytes, 4 * n_head * hd * vis))
            return r
        return w

    def _act_matmul(self, fn, act):
        clock, log, cur, by_rows = time.perf_counter_ns, self.log, self.cur, self.by_rows

        def w(dot, rows, out):
            t0 = clock()
            r = fn(dot, rows, out)
            dt = clock() - t0
            layer, op = by_rows.get(id(rows)) or (cur[0], "matmul")
            log.append((layer, op, dt, rows.nbytes, 2 * act.n * rows.shape[0] * act.t))
            return r
        return w

    def _patch(self, obj, name: str, new, instance: bool = False) -> None:
        self._saved.append((obj, name, getattr(obj, name), instance))
        setattr(obj, name, new)

    def __enter__(self) -> "Profiler":
        be = self.model.be
        for name in ("rope", "store_kv", "swiglu", "geglu", "swiglu_oai", "add_inplace", "route", "group_by_expert",
                     "gather_rows", "add_bias_rows", "scatter_weighted", "sum_slots"):
            op = {"swiglu": "glu", "geglu": "glu", "swiglu_oai": "glu", "add_inplace": "residual",
                  "route": "moe_route"}.get(name, "moe_glue" if name in _MOE_GLUE else name)
            self._patch(be, name, self._simple(getattr(be, name), op))
        self._patch(be, "rope_cache", self._simple(be.rope_cache, "rope_cache", INPUT))
        self._patch(be, "rms_norm", self._norm(be.rms_norm))
        self._patch(be, "rms_norm_heads", self._norm(be.rms_norm_heads))
        self._patch(be, "attention", self._attention(be.attention))
        self._patch(be, "flash_attn", self._flash_attn(be.flash_attn))
        self._patch(be, "store_kv_rows", self._simple(be.store_kv_rows, "store_kv"))
        self._patch(be, "round_to_f16", self._simple(be.round_to_f16, "q_to_f16"))
        m = self.model
        self._patch(m, "_embed", self._simple(m._embed, "embed", INPUT), instance=True)
        for act in m.state.acts.values():
            self._patch(act, "load", self._simple(act.load, "act_quant"), instance=True)
            self._patch(act, "matmul", self._act_matmul(act.matmul, act), instance=True)
        self.cur[0] = INPUT
        return self

    def __exit__(self, *exc) -> None:
        while self._saved:
            obj, name, orig, instance = self._saved.pop()
            if instance:
                delattr(obj, name)  # the bound method of the class shows through again
            else:
                setattr(obj, name, orig)


# -- the report -------------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    ms: float
    share: float  # of the measured step
    calls: float = 0.0  # per step
    bytes: float = 0.0  # weights (or KV cache) read per step
    flops: float = 0.0

    @property
    def gb_s(self) -> float:
        return self.bytes / (self.ms * 1e6) if self.ms > 0 else 0.0

    @property
    def gflop_s(self) -> float:
        return self.flops / (self.ms * 1e6) if self.ms > 0 else 0.0

    def as_dict(self) -> dict:
        return {"name": self.name, "ms": round(self.ms, 6), "share": round(self.share, 6),
                "calls": self.calls, "bytes": int(self.bytes), "flops": int(self.flops),
                "gb_s": round(self.gb_s, 4), "gflop_s": round(self.gflop_s, 4)}


@dataclass
class StepProfile:
    kind: str  # "decode" or "prefill"
    n_tokens: int  # tokens in the step
    n_past: int  # context depth before the step
    reps: int
    step_ms: float  # measured wall time of the profiled step (mean over reps)
    plain_ms: float  # the same step without the profiler (mean over reps)
    layers: list[Row] = field(default_factory=list)  # input, blk.0 .. blk.N-1, output, [sampling], profiler
    ops: list[Row] = field(default_factory=list)  # the same time, split by operation

    @property
    def attributed_ms(self) -> float:
        return sum(r.ms for r in self.layers)

    @property
    def unattributed_ms(self) -> float:
        return max(0.0, self.step_ms - self.attributed_ms)  # the rows are timed inside the step

    def as_dict(self) -> dict:
        return {"kind": self.kind, "n_tokens": self.n_tokens, "n_past": self.n_past, "reps": self.reps,
                "step_ms": round(self.step_ms, 6), "unprofiled_step_ms": round(self.plain_ms, 6),
                "attributed_ms": round(self.attributed_ms, 6), "unattributed_ms": round(self.unattributed_ms, 6),
                "unattributed_share": round(self.unattributed_ms / self.step_ms, 6) if self.step_ms else 0.0,
                "layers": [r.as_dict() for r in self.layers], "ops": [r.as_dict() for r in self.ops]}


def _layer_name(layer: int, n_layer: int) -> str:
    if layer == INPUT:
        return "input"
    if layer == SAMPLING:
        return "sampling"
    if layer == PROFILER:
        return "profiler"
    return "output" if layer == n_layer else f"blk.{layer}"


def summarize(records: dict, n_layer: int, kind: str, n_tokens: int, n_past: int, reps: int,
              step_ns: float, plain_ns: float = 0.0) -> StepProfile:
    """Records summed over `reps` steps -> per-step rows by layer and by op."""
    step_ms = step_ns / reps / 1e6
    records = dict(records)
    attributed = sum(v[0] for v in records.values())
    if plain_ns:  # the profiler's own cost: profiled minus unprofiled, within what is left
        cost = min(max(0.0, step_ns - plain_ns), max(0.0, step_ns - attributed))
        records[(PROFILER, "profiler")] = [cost, 0, 0, 0]
    by_layer: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for (layer, op), vals in records.items():
        for acc in (by_layer[layer], by_op[op]):
            for i in range(4):
                acc[i] += vals[i]

    def row(name, v):
        ms = v[0] / reps / 1e6
        return Row(name, ms, ms / step_ms if step_ms else 0.0, v[1] / reps, v[2] / reps, v[3] / reps)

    order = [INPUT, *range(n_layer), n_layer, SAMPLING, PROFILER]
    layers = [row(_layer_name(i, n_layer), by_layer[i]) for i in order if i in by_layer or 0 <= i < n_layer]
    rank = {op: i for i, op in enumerate(OPS)}
    ops_ = [row(op, by_op[op]) for op in sorted(by_op, key=lambda o: rank.get(o, len(OPS)))]
    return StepProfile(kind, n_tokens, n_past, reps, step_ms, plain_ns / reps / 1e6, layers, ops_)


@dataclass
class ProfileReport:
    model: str
    model_type: str
    n_threads: int
    decode: StepProfile
    prefill: StepProfile

    def as_dict(self) -> dict:
        return {"model_filename": self.model, "model_type": self.model_type, "n_threads": self.n_threads,
                "decode": self.decode.as_dict(), "prefill": self.prefill.as_dict()}


def profile_model(path, n_threads: int = 2, n_prompt: int = 512, n_ubatch: int = 512, reps: int = 5,
                  progress=None, flash_attn: str = "auto") -> ProfileReport:
    """Profile one prefill micro-batch of min(n_prompt, n_ubatch) random tokens at depth 0, and
    decode steps (eval of one token, then the default sampler chain) after that prompt.

    Each step runs once unprofiled first (compilation, caches), then `reps` times without the
    profiler (the reference step time) and `reps` times with it. The difference of the two
    means is the wrappers' own cost, shown as the row 'profiler'; what remains is the graph's
    NumPy glue, reported as unattributed."""
    from .bench import GlibcRand, model_info
    from .model.transformer import load_model
    from .sampling import Sampler, SamplerParams

    if n_prompt < 1:
        raise LlamacliError(f"--per-layer needs a prompt of at least 1 token (-p), got {n_prompt}")
    if reps < 1:
        raise LlamacliError(f"-r must be at least 1, got {reps}")
    T = min(n_prompt, n_ubatch)
    m = load_model(path, n_ctx=T + 2 * reps + 1, n_batch=T, n_threads=n_threads, flash_attn=flash_attn)
    info = model_info(m, str(path))
    rand = GlibcRand(1)
    n_vocab = m.cfg.n_vocab
    batch = [rand() % n_vocab for _ in range(T)]
    sampler = Sampler(SamplerParams(seed=1), n_vocab)
    say = progress or (lambda s: None)
    clock = time.perf_counter_ns
    prof = Profiler(m)

    say("warm-up")
    m.state.reset()
    m.eval(batch, want="last")
    sampler.sample(m.eval([batch[0]], want="last")[0])

    # prefill: the same batch at depth 0
    plain = 0
    for i in range(reps):
        say(f"prefill {i + 1}/{reps} (unprofiled)")
        m.state.reset()
        t0 = clock()
        m.eval(batch, want="last")
        plain += clock() - t0
    total = 0
    for i in range(reps):
        say(f"prefill {i + 1}/{reps}")
        m.state.reset()
        with prof:
            t0 = clock()
            m.eval(batch, want="last")
            total += clock() - t0
    prefill = summarize(prof.records, m.cfg.n_layer, "prefill", T, 0, reps, total, plain)

    # decode: one token at a time after the prompt, each followed by sampling
    prof.clear()
    m.state.reset()
    tok = sampler.sample(m.eval(batch, want="last")[0])
    plain = 0
    for i in range(reps):
        say(f"decode {i + 1}/{reps} (unprofiled)")
        t0 = clock()
        tok = sampler.sample(m.eval([tok], want="last")[0])
        plain += clock() - t0
    n_past = m.state.n_past
    total = 0
    for i in range(reps):
        say(f"decode {i + 1}/{reps}")
        with prof:
            t0 = clock()
            logits = m.eval([tok], want="last")
            t1 = clock()
            tok = sampler.sample(logits[0])
            t2 = clock()
            total += t2 - t0
        prof.add(SAMPLING, "sampling", t2 - t1)
    decode = summarize(prof.records, m.cfg.n_layer, "decode", 1, n_past, reps, total, plain)
    return ProfileReport(str(path), info.model_type, m.n_threads, decode, prefill)


# -- rendering --------------------------------------------------------------------------------

def _bar(share: float, width: int = 30) -> str:
    cells = max(0.0, min(1.0, share)) * width
    full = int(cells)
    parts = " ▏▎▍▌▋▊▉"
    frac = parts[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + frac).rstrip()


def _fmt_rows(rows: list[Row], step: StepProfile, bars: bool) -> list[list[str]]:
    out = []
    for r in rows:
        cells = [r.name, f"{r.ms:.3f}", f"{100 * r.share:.1f}%",
                 f"{r.gb_s:.2f}" if r.bytes else "", f"{r.gflop_s:.2f}" if r.flops else ""]
        if bars:
            cells.append(_bar(r.share))
        out.append(cells)
    un = step.unattributed_ms
    tail = [["unattributed", f"{un:.3f}", f"{100 * un / step.step_ms:.1f}%", "", ""],
            ["measured step", f"{step.step_ms:.3f}", "100.0%", "", ""]]
    if bars:
        tail[0].append(_bar(un / step.step_ms))
        tail[1].append("")
    return out + tail


def render_step(step: StepProfile, bars: bool = True) -> str:
    from .bench import md_table

    title = (f"{step.kind}: {step.n_tokens} token{'s' if step.n_tokens != 1 else ''} at depth {step.n_past}, "
             f"mean of {step.reps} step{'s' if step.reps != 1 else ''}: {step.step_ms:.3f} ms profiled, "
             f"{step.plain_ms:.3f} ms without the profiler")
    cols = ["", "ms", "share", "GB/s", "GFLOP/s"] + (["share of the step"] if bars else [])
    left = {0, 5}
    by_op = md_table(["op"] + cols[1:], _fmt_rows(step.ops, step, bars), left)
    by_layer = md_table(["layer"] + cols[1:], _fmt_rows(step.layers, step, bars), left)
    return f"### {title}\n\nby operation\n\n{by_op}\nby layer\n\n{by_layer}"


def render_report(rep: ProfileReport, fmt: str = "md", bars: bool = True) -> str:
    import json

    if fmt == "json":
        return json.dumps(rep.as_dict(), indent=2) + "\n"
    if fmt == "jsonl":
        return json.dumps(rep.as_dict()) + "\n"
    if fmt == "csv":
        lines = ["step,kind,name,ms,share,calls,bytes,flops,gb_s,gflop_s"]
        for step in (rep.decode, rep.prefill):
            for kind, rows in (("op", step.ops), ("layer", step.layers)):
                for r in rows:
                    d = r.as_dict()
                    lines.append(",".join(str(x) for x in (step.kind, kind, r.name, d["ms"], d["share"], d["calls"],
                                                            d["bytes"], d["flops"], d["gb_s"], d["gflop_s"])))
            lines.append(f"{step.kind},total,unattributed,{step.unattributed_ms:.6f},"
                         f"{step.unattributed_ms / step.step_ms:.6f},,,,,")
            lines.append(f"{step.kind},total,step,{step.step_ms:.6f},1.0,,,,,")
        return "\n".join(lines) + "\n"
    head = f"## {rep.model_type} ({rep.model}), {rep.n_threads} thread{'s' if rep.n_threads != 1 else ''}\n\n"
    return head + render_step(rep.decode, bars) + "\n" + render_step(rep.prefill, bars)
