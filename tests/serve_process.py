"""A `llamacli serve` process on a free loopback port, for tests/test_serve.py and
scripts/load_test_serve.py: started, waited for (/health), talked to, stopped by SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A `llamacli serve` process on a free loopback port."""

    def __init__(self, model: Path, *args):
        self.port = free_port()
        self.model = str(model)
        self.log = tempfile.TemporaryFile("w+")  # stderr, read at the end (a pipe could fill up)
        self.proc = subprocess.Popen([sys.executable, "-m", "llamacli", "serve", "-m", self.model, "--port",
                                      str(self.port), "-t", "2", *map(str, args)],
                                     stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.stderr()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("serve did not come up")
            time.sleep(0.3)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str = "none"):
        import openai

        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=120)

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def json(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        status, raw = self.request(method, path, body, headers)
        return status, json.loads(raw)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return code, self.stderr()

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()
