#!/usr/bin/env python3
"""llamacli against llama.cpp, side by side on this machine.

Throughput: `llamacli bench` and llama.cpp's `llama-bench` run alternately (one test of one
tool, then the same test of the other; the order flips every round so drift in the machine's
load hits both alike) on SmolLM2-135M Q4_1 and Gemma-3-270m Q4_K_M, at -t 1 and -t 2, pp512 and
tg128. The table gives mean ± sample stddev of t/s over all repetitions and the ratio
llamacli / llama.cpp.

Start-up and memory: time from process start to the first generated token of `llamacli run`
with an empty Numba cache (cold: every kernel compiles) and with a filled one (warm), against
`llama-cli`; and the peak RSS of `run -c 2048 -n 64` against llama-cli's (os.wait4's rusage of
that one child).

    scripts/bench_vs_llamacpp.py                         # everything, llama-bench's defaults (-r 5)
    scripts/bench_vs_llamacpp.py -r 2 --rounds 1 --models smollm2 -t 2
    scripts/bench_vs_llamacpp.py -p 16 -n 4 -r 1 --no-cold   # a quick check that it all runs
    scripts/bench_vs_llamacpp.py --json results.json
    scripts/bench_vs_llamacpp.py --models /tmp/smol-IQ4_XS.gguf -p 0 --no-startup   # any file, tg128 only

Run it on a quiet machine: both tools share the same cores, so anything else running skews both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER_BIN = Path(os.environ.get("PEER_BIN", "/work/peer/native/bin"))  # the native build: what a user runs
PROMPT = "The capital of France is"


def mean(v):
    return sum(v) / len(v) if v else float("nan")


def stdev(v):
    if len(v) <= 1:
        return 0.0
    m = mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def say(msg: str) -> None:
    print(f"[bench_vs_llamacpp] {msg}", file=sys.stderr, flush=True)


# -- throughput ---------------------------------------------------------------------------------

def run_json(cmd: list[str], env=None) -> list[dict]:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n  {tail}")
    return json.loads(r.stdout)


def bench_once(tool: str, model: Path, threads: int, n_prompt: int, n_gen: int, reps: int, args) -> list[float]:
    common = ["-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-t", str(threads), "-r", str(reps),
              "-o", "json"]
    if tool == "llama.cpp":
        cmd = [str(args.llama_bench), *common]
    else:
        cmd = [sys.executable, "-m", "llamacli", "bench", *common, "--no-progress"]
    doc = run_json(cmd)
    return [float(x) for x in doc[0]["samples_ts"]]


def throughput(models: dict[str, Path], args) -> list[dict]:
    tests = [("pp", args.n_prompt, 0), ("tg", 0, args.n_gen)]
    tests = [t for t in tests if t[1] or t[2]]
    rows = []
    for name, path in models.items():
        for threads in args.threads:
            for kind, p, g in tests:
                samples = {"llama.cpp": [], "llamacli": []}
                for rnd in range(args.rounds):
                    order = ["llama.cpp", "llamacli"] if rnd % 2 == 0 else ["llamacli", "llama.cpp"]
                    for tool in order:
                        say(f"{name} -t {threads} {kind}{p or g}: {tool} (round {rnd + 1}/{args.rounds})")
                        samples[tool] += bench_once(tool, path, threads, p, g, args.reps, args)
                ref, ours = samples["llama.cpp"], samples["llamacli"]
                rows.append({"model": name, "threads": threads, "test": f"{kind}{p or g}",
                             "llama_cpp_ts": mean(ref), "llama_cpp_sd": stdev(ref), "llama_cpp_samples": ref,
                             "llamacli_ts": mean(ours), "llamacli_sd": stdev(ours), "llamacli_samples": ours,
                             "ratio": mean(ours) / mean(ref)})
    return rows


def print_throughput(rows: list[dict]) -> None:
    print("| model | threads | test | llama.cpp t/s | llamacli t/s | llamacli / llama.cpp |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {r['test']} | {r['llama_cpp_ts']:.2f} ± {r['llama_cpp_sd']:.2f} | "
              f"{r['llamacli_ts']:.2f} ± {r['llamacli_sd']:.2f} | {r['ratio']:.3f} |")
    print()


# -- start-up and memory ----------------------------------------------------------------------------

def timed_process(cmd: list[str], env=None, marker: bytes | None = None, timeout: float = 1800) -> dict:
    """Run cmd; seconds until the first stdout byte after `marker` (the first token), total
    seconds, and the peak RSS of that one process (os.wait4's rusage, ru_maxrss in KiB)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env)
        fd = p.stdout.fileno()
        seen, t_first = b"", None
        while chunk := os.read(fd, 4096):
            if t_first is None:
                seen += chunk
                at = 0 if marker is None else seen.find(marker)
                if at >= 0 and len(seen) > at + len(marker or b""):  # a byte after the marker
                    t_first = time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                p.kill()
                break
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        total = time.perf_counter() - t0
        p.stdout.close()
        if p.returncode != 0:
            err.seek(0)
            tail = (err.read().decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n  {tail}")
    return {"first_token_s": t_first, "total_s": total, "peak_rss_mib": ru.ru_maxrss / 1024}


def llamacli_run(model: Path, threads: int, n: int, ctx: int) -> list[str]:
    return [sys.executable, "-m", "llamacli", "run", "-m", str(model), "-p", PROMPT, "-n", str(n), "--temp", "0",
            "-t", str(threads), "-c", str(ctx), "--no-display-prompt", "--ignore-eos"]


def llama_cli(args, model: Path, threads: int, n: int, ctx: int) -> list[str]:
    # this build's llama-cli is conversational: -st answers one turn and exits; the echo of the
    # prompt ("> PROMPT") marks where the generated text begins
    return [str(args.llama_cli), "-m", str(model), "-p", PROMPT, "-n", str(n), "--temp", "0", "-t", str(threads),
            "-c", str(ctx), "-st", "--simple-io", "--ignore-eos"]


def startup(models: dict[str, Path], args) -> list[dict]:
    rows = []
    threads = max(args.threads)
    marker_cli = f"> {PROMPT}\n".encode()
    for name, path in models.items():
        row = {"model": name, "threads": threads}
        if args.cold:
            with tempfile.TemporaryDirectory(prefix="numba-cold-") as cache:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                say(f"{name}: llamacli run, cold Numba cache (compiles every kernel)")
                row["llamacli_cold"] = timed_process(llamacli_run(path, threads, 1, 2048), env)
        say(f"{name}: llamacli run, warm")
        timed_process(llamacli_run(path, threads, 1, 2048))  # fills the cache if it was empty
        row["llamacli_warm"] = timed_process(llamacli_run(path, threads, 1, 2048))
        say(f"{name}: llama-cli")
        row["llama_cli"] = timed_process(llama_cli(args, path, threads, 1, 2048), marker=marker_cli)
        say(f"{name}: peak RSS, -c 2048 -n {args.rss_tokens}")
        row["llamacli_rss"] = timed_process(llamacli_run(path, threads, args.rss_tokens, 2048))
        row["llama_cli_rss"] = timed_process(llama_cli(args, path, threads, args.rss_tokens, 2048), marker=marker_cli)
        rows.append(row)
    return rows


def print_startup(rows: list[dict]) -> None:
    def s(d, k="first_token_s"):
        v = d.get(k) if d else None
        return "n/a" if v is None else f"{v:.2f}"

    print("| model | threads | llamacli cold s | llamacli warm s | llama-cli s | "
          "llamacli peak RSS MiB | llama-cli peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {s(r.get('llamacli_cold'))} | {s(r['llamacli_warm'])} | "
              f"{s(r['llama_cli'])} | {r['llamacli_rss']['peak_rss_mib']:.0f} | {r['llama_cli_rss']['peak_rss_mib']:.0f} |")
    print("\nstart to first token, seconds (whole process: interpreter, imports, load, prompt, first token); "
          "peak RSS of `run -c 2048`\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3",
                    help="names from llamacli.fetch or paths of .gguf files (default: both real models)")
    ap.add_argument("-t", "--threads", default="1,2", help="thread counts (default: 1,2)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt size of the pp test (0: skip)")
    ap.add_argument("-n", "--n-gen", type=int, default=128, help="tokens of the tg test (0: skip)")
    ap.add_argument("-r", "--reps", type=int, default=5, help="repetitions per invocation (default 5)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating invocations per tool and test (default 2)")
    ap.add_argument("--rss-tokens", type=int, default=64, help="tokens generated for the peak-RSS runs")
    ap.add_argument("--no-throughput", dest="throughput", action="store_false")
    ap.add_argument("--no-startup", dest="startup", action="store_false", help="skip start-up and RSS")
    ap.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold-cache start (slow)")
    ap.add_argument("--llama-bench", type=Path, default=PEER_BIN / "llama-bench")
    ap.add_argument("--llama-cli", type=Path, default=PEER_BIN / "llama-cli")
    ap.add_argument("--json", type=Path, help="also write every number and sample here")
    args = ap.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.reps < 1 or args.rounds < 1 or min(args.threads) < 1:
        ap.error("-r, --rounds and -t must be at least 1")
    for b in (args.llama_bench, args.llama_cli) if args.startup else (args.llama_bench,):
        if not b.exists():
            ap.error(f"{b}: not found")

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from llamacli.fetch import fetch

    models = {Path(name).stem if name.endswith(".gguf") else name: Path(name) if name.endswith(".gguf") else fetch(name)
              for name in args.models.split(",")}
    result = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "reps": args.reps, "rounds": args.rounds}
    if args.throughput:
        result["throughput"] = throughput(models, args)
        print_throughput(result["throughput"])
    if args.startup:
        result["startup"] = startup(models, args)
        print_startup(result["startup"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
