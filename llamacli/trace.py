"""Every named tensor of a prompt's graph, as llama.cpp's llama-eval-callback prints them, and
the comparison with its output (`llamacli trace`).

The graph (model/transformer.py) reports its tensors through Model.trace with llama.cpp's names
(attn_norm-0, Qcur-0, ..., l_out-29). Each is printed in eval-callback's layout
(common/debug.cpp): the first and last three rows and columns with %12.4f, then `sum = %f`, the
float32 sum taken element by element in ggml's order, so equal tensors print equal sums.
`compare` reads eval-callback's output and walks our tensors in graph order, each against the
last tensor of llama.cpp's that bears the same name, and stops at the first whose sum differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from .errors import LlamacliError

# our name -> llama.cpp's, where a family's graph names the tensor otherwise (gemma3: sa_out)
ALIASES = {"ffn_inp": ("ffn_inp", "sa_out")}
SHOWN = 3  # eval-callback's n: rows and columns shown at each end


@njit(cache=True)
def _sum_f32(x):
    """common_debug_print_tensor's sum: one float32 accumulator, in memory order."""
    s = np.float32(0.0)
    for i in range(x.shape[0]):
        s += x[i]
    return s


@dataclass
class Tensor:
    name: str  # with the layer, as llama.cpp's: "Qcur-0"
    shape: tuple  # ggml's order, ne0 first
    sum: str  # as printed, "%f"
    rows: list = field(default_factory=list)  # printed rows of values (the shown ones)


def _record(name: str, il: int, arr: np.ndarray) -> Tensor:
    a = np.ascontiguousarray(arr, dtype=np.float32)
    flat = a.reshape(-1)
    full = f"{name}-{il}" if il >= 0 else name
    m = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
    idx = list(range(m.shape[0])) if m.shape[0] <= 2 * SHOWN else \
        list(range(SHOWN)) + [-1] + list(range(m.shape[0] - SHOWN, m.shape[0]))
    rows = []
    for i in idx:
        if i < 0:
            rows.append(None)
            continue
        r = m[i]
        cols = list(r) if r.shape[0] <= 2 * SHOWN else list(r[:SHOWN]) + [None] + list(r[-SHOWN:])
        rows.append(cols)
    return Tensor(full, tuple(reversed(a.shape)) + (1,) * (4 - a.ndim), "%f" % _sum_f32(flat), rows)


def format_tensor(t: Tensor) -> str:
    out = [f"ggml_debug: {t.name:>24} = (f32) {{{', '.join(map(str, t.shape))}}}", "    ["]
    for r in t.rows:
        if r is None:
            out.append("        ..., ")
            continue
        line = ""
        for j, v in enumerate(r):  # "%12.4f" values, ", " between them, "   ..., " for the gap
            if v is None:
                line += "   ..., "
                continue
            line += "%12.4f" % v + (", " if j < len(r) - 1 else "")
        out.append("        [" + line + "  ],")
    out += ["    ]", f"    sum = {t.sum}"]
    return "\n".join(out)


def trace_prompt(model, tokens) -> list[Tensor]:
    """Evaluate the prompt in one batch (llama-eval-callback's run), recording every tensor."""
    recs: list[Tensor] = []
    model.trace = lambda name, il, arr: recs.append(_record(name, il, arr))
    try:
        model.state.reset()
        model.eval(np.asarray(tokens, np.int64), want="last")
    finally:
        model.trace = None
    return recs


_HEAD = re.compile(r"^(?:common_debug_cb_eval|ggml_debug):\s+(.+?) = \((\w+)\)\s*(?:(\w+)\(.*\) = )?\{([0-9, ]+)\}")
_SUM = re.compile(r"^\s+sum = (\S+)")


def read_eval_callback(path: Path) -> list[tuple[str, str, str]]:
    """(name, op, sum) of each tensor in llama-eval-callback's output (or ours), in order."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise LlamacliError(f"{path}: cannot read ({e.strerror})") from None
    out, cur = [], None
    for line in lines:
        m = _HEAD.match(line)
        if m:
            cur = (m.group(1), m.group(3) or "")
            continue
        m = _SUM.match(line)
        if m and cur is not None:
            out.append((cur[0], cur[1], m.group(1)))
            cur = None
    if not out:
        raise LlamacliError(f"{path}: no tensors found (expected llama-eval-callback's output)")
    return out


@dataclass
class Comparison:
    compared: int
    first_diff: tuple | None  # (our Tensor, llama.cpp's (name, op, sum)) of the first that differs
    missing: list  # our names llama.cpp's file does not have


def compare(ours: list[Tensor], theirs: list[tuple[str, str, str]]) -> Comparison:
    last: dict[str, tuple[str, str, str]] = {}
    for rec in theirs:
        last[rec[0]] = rec  # a name used several times (Qcur: matmul, reshape, rope): its last
    n, missing = 0, []
    for t in ours:
        base, _, layer = t.name.rpartition("-")
        names = ALIASES.get(base, (base,)) if base else (t.name,)
        ref = next((last[f"{b}-{layer}" if base else b] for b in names
                    if (f"{b}-{layer}" if base else b) in last), None)
        if ref is None:
            missing.append(t.name)
            continue
        n += 1
        if ref[2] != t.sum:
            return Comparison(n, (t, ref), missing)
    return Comparison(n, None, missing)
