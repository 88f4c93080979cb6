"""`llamacli quantize [options] in.gguf [out.gguf] TYPE [nthreads]`: llama-quantize's command line.

Glue over `llamacli.quantize.quantize_file`. The positional syntax is llama-quantize's: if the
word after the input names a type it is the type (and the output is ``ggml-model-TYPE.gguf``
beside the input), otherwise it is the output path and the type follows. TYPE is a mixture name
in any case (q4_k_m, Q8_0, Q3_K ...) or its number. Per-tensor lines and sizes go to stderr as
llama-quantize prints them; a progress bar is shown only on a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import List, Optional

import typer

from ..errors import LlamacliError

COMMAND_SETTINGS = {
    "help": "Quantize a GGUF model to another type, byte-identical to llama-quantize: "
            "in.gguf [out.gguf] TYPE [nthreads]. TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q2_K_S "
            "Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S "
            "IQ2_M IQ3_XXS IQ3_XS IQ3_S IQ3_M IQ4_NL IQ4_XS TQ1_0 TQ2_0 MXFP4_MOE F16 BF16 F32 (Q3_K, "
            "Q4_K, Q5_K are aliases of the _M mixtures). IQ1_*, IQ2_XXS/XS/S and Q2_K_S need --imatrix.",
}


def _parse_positionals(args: list[str]):
    """(input, output or None, ftype name, nthreads or None) the way llama-quantize reads them."""
    from ..quantize import parse_ftype

    if len(args) < 2:
        raise LlamacliError("quantize: bad arguments: expected in.gguf [out.gguf] TYPE [nthreads]")
    inp, rest = args[0], args[1:]
    out = None
    try:
        _, ftype = parse_ftype(rest[0])
        rest = rest[1:]
    except LlamacliError:
        out = rest[0]
        if len(rest) < 2:
            raise LlamacliError("quantize: missing ftype") from None
        _, ftype = parse_ftype(rest[1])
        rest = rest[2:]
    nthreads = None
    if rest:
        try:
            nthreads = int(rest[0])
        except ValueError:
            raise LlamacliError(f"quantize: invalid nthread '{rest[0]}'") from None
        rest = rest[1:]
    if rest:
        raise LlamacliError(f"quantize: unexpected argument '{rest[0]}'")
    return inp, out, ftype, nthreads


def _parse_tensor_type(text: str) -> tuple[str, str]:
    """parse_tensor_type: NAME_REGEX=TYPE (the name lower-cased, as llama-quantize does)."""
    from ..quantize import parse_ggml_type

    name, sep, qtype = text.partition("=")
    if not sep:
        raise LlamacliError(f"--tensor-type: malformed tensor type '{text}' (expected NAME=TYPE)")
    if not name:
        raise LlamacliError("--tensor-type: missing tensor name")
    if not qtype:
        raise LlamacliError("--tensor-type: missing quantization type")
    return name.lower(), parse_ggml_type(qtype)


def command(
    args: List[str] = typer.Argument(..., metavar="in.gguf [out.gguf] TYPE [nthreads]"),
    threads: Optional[int] = typer.Option(None, "-t", "--threads", help="Threads (default: all cores)."),
    allow_requantize: bool = typer.Option(
        False, "--allow-requantize", help="Allow requantizing tensors that are already quantized."),
    leave_output_tensor: bool = typer.Option(
        False, "--leave-output-tensor", help="Leave output.weight un(re)quantized."),
    pure: bool = typer.Option(False, "--pure", help="No k-quant mixture: every tensor in the same type."),
    output_tensor_type: Optional[str] = typer.Option(
        None, "--output-tensor-type", metavar="TYPE", help="ggml type of output.weight."),
    token_embedding_type: Optional[str] = typer.Option(
        None, "--token-embedding-type", metavar="TYPE", help="ggml type of the token embeddings."),
    tensor_type: Optional[List[str]] = typer.Option(
        None, "--tensor-type", metavar="NAME_REGEX=TYPE", help="Quantize matching tensors to TYPE (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and the sizes; write nothing."),
    imatrix: Optional[str] = typer.Option(
        None, "--imatrix", metavar="FILE", help="Importance matrix (GGUF or .dat, from llamacli/llama-imatrix)."),
    include_weights: Optional[List[str]] = typer.Option(
        None, "--include-weights", metavar="NAME", help="Use the imatrix only for tensors whose name contains NAME "
                                                        "(repeatable)."),
    exclude_weights: Optional[List[str]] = typer.Option(
        None, "--exclude-weights", metavar="NAME", help="Do not use the imatrix for tensors whose name contains NAME "
                                                        "(repeatable)."),
) -> None:
    from ..quantize import default_output_path, parse_ggml_type, quantize_file

    if include_weights and exclude_weights:
        raise LlamacliError("--include-weights and --exclude-weights cannot be used together")
    inp, out, ftype, nthreads = _parse_positionals(list(args))
    if threads is not None:
        nthreads = threads
    overrides = [_parse_tensor_type(t) for t in (tensor_type or [])]
    ott = parse_ggml_type(output_tensor_type) if output_tensor_type else None
    tet = parse_ggml_type(token_embedding_type) if token_embedding_type else None
    if out is None and not dry_run:
        out = str(default_output_path(inp, ftype))

    err = sys.stderr
    if dry_run:
        head = f"main: calculating quantization size for '{inp}' as {ftype}"
    else:
        head = f"main: quantizing '{inp}' to '{out}' as {ftype}"
    if nthreads:
        head += f" using {nthreads} threads"
    print(head, file=err, flush=True)

    bar = None
    if err.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="tensor", file=err, leave=False, dynamic_ncols=True)

    def log(line: str) -> None:
        if bar is not None:
            bar.write(line, file=err)
        else:
            print(line, file=err, flush=True)

    def on_tensor(i, tp) -> None:
        if bar is not None:
            bar.update(1)

    t0 = time.perf_counter()
    try:
        if bar is not None:
            from ..quantize.scan import ScannedGGUF

            bar.total = len(ScannedGGUF(inp).tensors)
        quantize_file(
            inp, out, ftype, nthreads=nthreads, allow_requantize=allow_requantize, pure=pure,
            leave_output_tensor=leave_output_tensor, output_tensor_type=ott, token_embedding_type=tet,
            tensor_types=overrides, dry_run=dry_run, imatrix=imatrix, include_weights=include_weights or (),
            exclude_weights=exclude_weights or (), log=log, on_tensor=on_tensor,
        )
    finally:
        if bar is not None:
            bar.close()
    ms = (time.perf_counter() - t0) * 1000.0
    print(f"\nmain: quantize time = {ms:8.2f} ms", flush=True)
