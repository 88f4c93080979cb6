"""`llamacli bench`: throughput as llama.cpp's llama-bench; `--per-layer` and `--kernels` breakdowns.

Glue over `llamacli.bench` and `llamacli.profile`. As llama-bench, every test parameter takes a
comma list or can be repeated (`-t 1,2`, `-m a.gguf -m b.gguf`), and every combination is run.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import LlamacliError
from .run import check_flash_attn, flash_attn_option

COMMAND_SETTINGS = {"help": "Measure prompt and generation speed (llama-bench); --per-layer, --kernels."}


def parse_list(values: list[str] | None, flag: str, default: list, cast=int) -> list:
    """Comma lists and repeated flags, as llama-bench: ['1,2', '4'] -> [1, 2, 4]."""
    if not values:
        return list(default)
    out = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                raise LlamacliError(f"{flag}: empty value in '{v}'")
            try:
                out.append(cast(item))
            except ValueError:
                raise LlamacliError(f"{flag}: '{item}' is not a number") from None
    return out


def parse_pg(values: list[str] | None) -> list[tuple[int, int]]:
    out = []
    for v in values or []:
        parts = v.split(",")
        if len(parts) != 2:
            raise LlamacliError(f"-pg takes PP,TG (two numbers), got '{v}'")
        try:
            out.append((int(parts[0]), int(parts[1])))
        except ValueError:
            raise LlamacliError(f"-pg takes PP,TG (two numbers), got '{v}'") from None
    return out


class _Progress:
    """An updating line on a terminal, llama-bench's --progress lines otherwise when asked."""

    def __init__(self, mode: Optional[bool]):
        self.tty = sys.stderr.isatty()
        self.on = self.tty if mode is None else mode
        self.width = 0

    def __call__(self, i: int, n: int, what: str) -> None:
        if not self.on:
            return
        msg = f"llamacli bench: {i}/{n}: {what}"
        if self.tty:
            sys.stderr.write("\r" + msg.ljust(self.width))
            self.width = len(msg)
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.on and self.tty and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def command(
    model: list[str] = typer.Option(None, "-m", "--model", metavar="FILE[,FILE]", help="GGUF file(s); repeat or comma-separate."),
    n_prompt: list[str] = typer.Option(None, "-p", "--n-prompt", metavar="N[,N]", help="Prompt sizes (pp tests). [default: 512]"),
    n_gen: list[str] = typer.Option(None, "-n", "--n-gen", metavar="N[,N]", help="Generation lengths (tg tests). [default: 128]"),
    pg: list[str] = typer.Option(None, "-pg", metavar="PP,TG", help="PP,TG: a prompt then a generation, timed together."),
    threads: list[str] = typer.Option(None, "-t", "--threads", metavar="N[,N]", help="Thread counts, e.g. 1,2. [default: cores, max 4]"),
    reps: int = typer.Option(5, "-r", "--repetitions", metavar="N", help="Timed repetitions of each test."),
    output: str = typer.Option("md", "-o", "--output", metavar="FORMAT", help="md, csv, json or jsonl."),
    batch_size: int = typer.Option(2048, "-b", "--batch-size", metavar="N", help="Prompt tokens per eval call (logical batch)."),
    ubatch_size: int = typer.Option(512, "-ub", "--ubatch-size", metavar="N", help="Prompt tokens through the graph at once."),
    flash_attn: str = flash_attn_option(),
    no_warmup: bool = typer.Option(False, "--no-warmup", help="Skip the warm-up run of each test."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress on stderr. [default: on a terminal]"),
    per_layer: bool = typer.Option(False, "--per-layer", help="Time one decode step and one prefill batch by layer and operation."),
    kernels: bool = typer.Option(False, "--kernels", help="Matrix-vector and matrix-matrix throughput of every weight type."),
    kernel_tokens: list[str] = typer.Option(None, "--kernel-tokens", metavar="N[,N]", help="Token counts for --kernels. [default: 1,128]"),
    kernel_types: list[str] = typer.Option(None, "--kernel-types", metavar="TYPE[,TYPE]", help="Weight types for --kernels (e.g. Q4_0,Q4_K). [default: all]"),
    no_bars: bool = typer.Option(False, "--no-bars", help="No bar chart in the --per-layer tables."),
):
    """Measure prompt processing (pp) and generation (tg) speed as llama-bench does."""
    from .. import bench as core  # numpy and the engine load only when bench runs

    fmt = output.lower()
    if fmt not in core.OUTPUT_FORMATS:
        raise LlamacliError(f"-o must be one of {', '.join(core.OUTPUT_FORMATS)}, got '{output}'")
    if per_layer and kernels:
        raise LlamacliError("--per-layer and --kernels cannot be combined")
    if reps < 1:
        raise LlamacliError(f"-r must be at least 1, got {reps}")
    flash_attn = check_flash_attn(flash_attn)
    t_list = parse_list(threads, "-t", [core.default_threads()])
    if any(t < 1 for t in t_list):
        raise LlamacliError(f"-t values must be at least 1, got {t_list}")
    prog = _Progress(progress)
    out = sys.stdout

    if kernels:
        toks = parse_list(kernel_tokens, "--kernel-tokens", [1, 128])
        if any(t < 1 for t in toks):
            raise LlamacliError(f"--kernel-tokens values must be at least 1, got {toks}")
        types = parse_list(kernel_types, "--kernel-types", [], str) or None
        res = core.bench_kernels(t_list[0], toks, types, progress=lambda s: prog(1, 1, s))
        prog.done()
        out.write(core.render_kernels(res, fmt, t_list[0]))
        return

    models = parse_list(model, "-m", [], str)
    if not models:
        raise LlamacliError("no model given (-m FILE)")
    p_list = parse_list(n_prompt, "-p", [core.DEFAULT_N_PROMPT])
    g_list = parse_list(n_gen, "-n", [core.DEFAULT_N_GEN])

    if per_layer:
        from ..profile import profile_model, render_report

        from pathlib import Path

        for m in models:
            if not Path(m).is_file():
                raise LlamacliError(f"{m}: no such model file")
        rep = profile_model(models[0], n_threads=t_list[0], n_prompt=p_list[0], n_ubatch=ubatch_size, reps=reps,
                            progress=lambda s: prog(1, 1, s), flash_attn=flash_attn)
        prog.done()
        out.write(render_report(rep, fmt, bars=not no_bars))
        return

    params = core.BenchParams(models=models, n_prompt=p_list, n_gen=g_list, n_pg=parse_pg(pg), n_threads=t_list,
                              reps=reps, n_batch=batch_size, n_ubatch=ubatch_size, warmup=not no_warmup,
                              flash_attn=flash_attn)
    params.check()
    printer = core.Printer(fmt, out)
    printer.header()

    def show(r):
        prog.done()
        printer.test(r)

    core.run_bench(params, on_result=show, progress=prog)
    prog.done()
    printer.footer()
