#!/usr/bin/env python3
"""A bounded load test of `llamacli serve` on loopback: 32 requests over 8 keep-alive
connections (4 each, one after another), against a server with -np 4 and then with -np 1.

Every request is a chat completion of exactly --tokens tokens (ignore_eos, greedy; 128 by
default, so that decoding, not the ~30-token prompts, is most of the work), each with its own
prompt. The table gives, for each server, the requests answered and failed, the completion
tokens, the wall time from the first request sent to the last answer, the aggregate tokens/s,
the server's resident memory before and after the load, and the mean number of busy slots per
model step (llamacpp:n_busy_slots_per_decode from /metrics); then the ratio of the two
aggregate rates (the gain of decoding the slots together). Nothing leaves 127.0.0.1, the
request count is fixed, and each request times out.

    scripts/load_test_serve.py [-m model.gguf] [--tokens 128] [--requests 32] [--connections 8]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import http.client
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serve_process import Served  # noqa: E402

TIMEOUT_S = 600  # per request


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def connection_worker(port: int, ids: list[int], n_tokens: int) -> list[tuple[bool, int, str]]:
    """One keep-alive connection sending its requests in turn: (ok, completion tokens, error)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    out = []
    try:
        for i in ids:
            body = {"messages": [{"role": "user", "content": f"Write about the number {i}."}],
                    "max_tokens": n_tokens, "temperature": 0, "ignore_eos": True}
            try:
                conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                if r.status != 200:
                    out.append((False, 0, f"HTTP {r.status}: {raw[:200]!r}"))
                    continue
                n = json.loads(raw)["usage"]["completion_tokens"]
                out.append((n == n_tokens, n, "" if n == n_tokens else f"{n} tokens, not {n_tokens}"))
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                out.append((False, 0, f"{type(e).__name__}: {e}"))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    finally:
        conn.close()
    return out


def load(model: Path, n_parallel: int, n_requests: int, n_conn: int, n_tokens: int) -> dict:
    srv = Served(model, "-np", n_parallel, "-c", 1024 * n_parallel)
    try:
        rss0 = rss_mib(srv.proc.pid)
        plan = [list(range(c, n_requests, n_conn)) for c in range(n_conn)]
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(n_conn) as pool:
            results = [r for rs in pool.map(lambda ids: connection_worker(srv.port, ids, n_tokens), plan) for r in rs]
        wall = time.perf_counter() - t0
        rss1 = rss_mib(srv.proc.pid)
        status, raw = srv.request("GET", "/metrics")
        busy = next(float(line.split()[1]) for line in raw.decode().splitlines()
                    if line.startswith("llamacpp:n_busy_slots_per_decode "))
    finally:
        code, err = srv.stop()
    ok = sum(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    errors = [r[2] for r in results if not r[0]]
    return {"np": n_parallel, "sent": len(results), "ok": ok, "failed": len(errors), "tokens": tokens, "wall": wall,
            "tps": tokens / wall, "rss0": rss0, "rss1": rss1, "busy": busy, "errors": errors, "exit": code}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", type=Path, default=None, help="GGUF model (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--tokens", type=int, default=128, help="completion tokens of each request")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()
    if not (1 <= a.requests <= 256 and 1 <= a.connections <= 32 and 1 <= a.tokens <= 256):
        ap.error("keep it bounded: --requests 1..256, --connections 1..32, --tokens 1..256")
    model = a.model
    if model is None:
        from llamacli import fetch
        model = fetch.fetch("smollm2", quiet=True)
    rows = [load(model, n, a.requests, a.connections, a.tokens) for n in (4, 1)]
    print(f"{a.requests} requests over {a.connections} connections, {a.tokens} tokens each, {model.name}")
    print(f"{'np':>3} {'sent':>5} {'ok':>4} {'failed':>6} {'tokens':>7} {'wall s':>8} {'tok/s':>8} "
          f"{'RSS before MiB':>15} {'RSS after MiB':>14} {'busy/step':>9} {'exit':>5}")
    for r in rows:
        print(f"{r['np']:>3} {r['sent']:>5} {r['ok']:>4} {r['failed']:>6} {r['tokens']:>7} {r['wall']:>8.2f} "
              f"{r['tps']:>8.2f} {r['rss0']:>15.1f} {r['rss1']:>14.1f} {r['busy']:>9.2f} {r['exit']:>5}")
        for e in r["errors"][:5]:
            print(f"    error: {e}")
    print(f"aggregate tokens/s, -np 4 / -np 1: {rows[0]['tps'] / rows[1]['tps']:.2f}x")
    return 0 if all(r["failed"] == 0 and r["sent"] == a.requests and r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
