"""`llamacli serve` against the real SmolLM2, driven by the real `openai` client (and plain
HTTP where a client would refuse to send the request): replies plain and streamed, the same
text as `run -cnv -st`, concurrent clients over parallel slots, every endpoint's shape, the
errors bad input gets, the API key, the bounded queue, a disconnect freeing its slot, SIGTERM,
and the chat page in headless Chromium."""

from __future__ import annotations

import concurrent.futures as cf
import http.client
import json
import os
import shutil
import signal
import time
from pathlib import Path

import openai
import pytest

from llamacli.cli import main
from serve_process import Served

pytestmark = pytest.mark.real

KEY = "test-key-123"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def srv(smollm2_path):
    s = Served(smollm2_path, "-np", 4, "-c", 4096, "-a", "smollm2")
    yield s
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def small(smollm2_path):
    """One slot, a queue of one, an API key."""
    s = Served(smollm2_path, "-np", 1, "-c", 1024, "--max-queue", 1, "--api-key", KEY, "-a", "smollm2")
    yield s
    if s.proc.poll() is None:
        s.stop()


def chat(client, content: str, **kw) -> str:
    r = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": content}], **kw)
    return r.choices[0].message.content


def assert_error(status: int, body: dict, want_status: int, want_type: str) -> str:
    assert status == want_status, body
    e = body["error"]
    assert set(e) >= {"message", "type", "code"} and e["code"] == want_status and e["type"] == want_type, body
    assert isinstance(e["message"], str) and e["message"]
    return e["message"]


# -- replies --------------------------------------------------------------------------------

def test_plain_and_streamed_replies(srv):
    c = srv.client()
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                  temperature=0, max_tokens=24)
    text = r.choices[0].message.content
    assert text.strip()
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(c.chat.completions.create(model=srv.model, messages=[{"role": "user", "content": QUESTION}],
                                            temperature=0, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == r.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    # the repeated prompt reuses the slot's cached prefix
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == r.usage.prompt_tokens - 1


def test_greedy_reply_is_run_cnv_single_turns(srv, capsys, smollm2_path):
    message = "Name three colours of the rainbow."
    code = main(["run", "-m", str(smollm2_path), "-cnv", "-st", "-p", message, "--temp", "0", "-n", "24"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.endswith("\n")
    assert chat(srv.client(), message, temperature=0, max_tokens=24) == out[:-1]


def test_eight_concurrent_clients_get_the_replies_they_get_alone(srv):
    """With -np 4 the requests are decoded together (and four wait); at temperature 0 each
    reply is the one the same request gets alone, as a batched step changes no logit."""
    c = srv.client()
    asks = [f"Say a word about the number {i}." for i in range(8)]
    alone = [chat(c, a, temperature=0, max_tokens=12) for a in asks]
    before = metrics(srv)
    with cf.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda a: chat(srv.client(), a, temperature=0, max_tokens=12), asks))
    assert together == alone
    after = metrics(srv)
    steps = after["llamacpp:n_decode_total"] - before["llamacpp:n_decode_total"]
    tokens = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    assert steps < tokens  # one at a time takes a step a token: here slots shared their steps
    assert after["llamacpp:n_busy_slots_per_decode"] > before["llamacpp:n_busy_slots_per_decode"]


def test_sampling_fields_and_seed(srv):
    c = srv.client()
    kw = dict(temperature=1.0, top_p=0.9, max_tokens=16, seed=42, presence_penalty=0.5, frequency_penalty=0.3)
    assert chat(c, "Tell me a story.", **kw) == chat(c, "Tell me a story.", **kw)
    full = chat(c, QUESTION, temperature=0, max_tokens=30)
    word = full.split()[3]  # a stop string ends the reply before it, and is not sent
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                  max_tokens=30, stop=["@@", word])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == full[:full.index(word)]
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}], temperature=0,
                                  max_tokens=5, logprobs=True, top_logprobs=3, extra_body={"top_k": 1, "min_p": 0.1})
    lp = r.choices[0].logprobs.content
    assert len(lp) == r.usage.completion_tokens
    for item in lp:
        assert len(item.top_logprobs) == 3 and item.logprob <= 0
        assert item.top_logprobs[0].logprob == item.logprob  # greedy: the pick is the most likely
    assert "".join(item.token for item in lp) == r.choices[0].message.content


def test_json_schema_and_json_object(srv):
    c = srv.client()
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Describe Paris as JSON."}],
                                  temperature=0, max_tokens=100,
                                  response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    doc = json.loads(r.choices[0].message.content)
    assert set(doc) == {"city", "population"} and isinstance(doc["population"], int)
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Give a JSON object with a "
                                                                                     "name and an age."}],
                                  temperature=0, max_tokens=100, response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop" and isinstance(json.loads(r.choices[0].message.content), dict)


def test_completions_endpoints(srv):
    c = srv.client()
    r = c.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens == 8
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0, stream=True) if ch.choices)
    assert streamed == r.choices[0].text
    status, j = srv.json("POST", "/completion", {"prompt": "The capital of France is", "n_predict": 8,
                                                 "temperature": 0, "return_tokens": True, "n_probs": 2})
    assert status == 200 and j["content"] == r.choices[0].text and j["stop"] is True
    assert j["stop_type"] == "limit" and j["tokens_predicted"] == 8 and len(j["tokens"]) == 8
    assert len(j["completion_probabilities"]) == 8 and len(j["completion_probabilities"][0]["top_logprobs"]) == 2
    assert j["generation_settings"]["n_predict"] == 8 and j["tokens_cached"] > 0
    status, raw = srv.request("POST", "/completion", {"prompt": [1, 504, 3458, 282], "n_predict": 3, "stream": True})
    events = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: ")]
    assert status == 200 and events[-1]["stop"] is True and all(not e["stop"] for e in events[:-1])
    assert sum(len(e["tokens"]) for e in events[:-1]) == 3


# -- the small endpoints --------------------------------------------------------------------

def metrics(srv, headers=None) -> dict[str, float]:
    status, raw = srv.request("GET", "/metrics", headers=headers)
    assert status == 200
    out = {}
    for line in raw.decode().splitlines():
        if not line.startswith("#"):
            name, value = line.split()
            out[name] = float(value)
    return out


def test_tokenize_detokenize_apply_template(srv):
    status, j = srv.json("POST", "/tokenize", {"content": "Hello world"})
    assert status == 200 and all(isinstance(t, int) for t in j["tokens"]) and len(j["tokens"]) == 2
    status, w = srv.json("POST", "/tokenize", {"content": "Hello world", "with_pieces": True, "add_special": True})
    # SmolLM2 adds no BOS (tokenizer.ggml.add_bos_token is false)
    assert w["tokens"] == [{"id": j["tokens"][0], "piece": "Hello"}, {"id": j["tokens"][1], "piece": " world"}]
    status, s = srv.json("POST", "/tokenize", {"content": "<|im_start|>", "parse_special": False})
    assert len(s["tokens"]) > 1  # the marker as plain text, not the special token
    status, d = srv.json("POST", "/detokenize", {"tokens": j["tokens"]})
    assert status == 200 and d == {"content": "Hello world"}
    msgs = [{"role": "user", "content": "Hi"}]
    status, t = srv.json("POST", "/apply-template", {"messages": msgs})
    assert status == 200 and t["prompt"].endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_props_metrics_health_models(srv):
    status, p = srv.json("GET", "/props")
    assert status == 200 and p["total_slots"] == 4 and p["model_path"] == srv.model
    assert p["default_generation_settings"]["n_ctx"] == 1024  # -c 4096 over -np 4
    assert p["default_generation_settings"]["params"]["top_k"] == 40 and "<|im_start|>" in p["chat_template"]
    m = metrics(srv)
    for name in ("prompt_tokens_total", "tokens_predicted_total", "n_decode_total", "requests_processing",
                 "requests_deferred", "n_busy_slots_per_decode", "prompt_tokens_seconds"):
        assert f"llamacpp:{name}" in m
    assert m["llamacpp:tokens_predicted_total"] > 0 and m["llamacpp:requests_deferred"] == 0
    assert srv.json("GET", "/health") == (200, {"status": "ok"})
    models = srv.client().models.list()
    assert [x.id for x in models.data] == ["smollm2"]
    status, j = srv.json("GET", "/v1/models")
    assert j["object"] == "list" and j["data"][0]["meta"]["n_vocab"] == 49152


# -- bad and hostile input ------------------------------------------------------------------

CHAT = "/v1/chat/completions"
MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    ({"messages": "hi"}, "'messages' must be a non-empty array"),
    ({}, "'messages' is required"),
    ({"messages": [{"role": "user", "content": 5}]}, "content"),
    ({"messages": MSG, "temperature": "hot"}, "'temperature' must be a number, got a string"),
    ({"messages": MSG, "max_tokens": "10"}, "'max_tokens' must be an integer"),
    ({"messages": MSG, "max_tokens": -5}, "'max_tokens' must be between"),
    ({"messages": MSG, "max_tokens": 10 ** 12}, "'max_tokens' must be between"),
    ({"messages": MSG, "stream": "yes"}, "'stream' must be a boolean"),
    ({"messages": MSG, "stop": [1]}, "'stop' must be a string or an array of strings"),
    ({"messages": MSG, "seed": 2 ** 40}, "'seed' must be between"),
    ({"messages": MSG, "top_logprobs": 3}, "top_logprobs requires logprobs"),
    ({"messages": MSG, "n": 2}, "only one choice"),
    ({"messages": MSG, "temperature": float("nan")}, "not valid JSON"),
    ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format type"),
    ({"messages": MSG, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}},
     "JSON schema"),
])
def test_bad_chat_requests_get_400(srv, body, fragment):
    status, j = srv.json("POST", CHAT, body)
    assert fragment in assert_error(status, j, 400, "invalid_request_error")


def test_prompt_beyond_the_context_unknown_model_and_routes(srv):
    status, j = srv.json("POST", CHAT, {"messages": [{"role": "user", "content": "word " * 1100}]})
    assert_error(status, j, 400, "exceed_context_size_error")
    assert j["error"]["n_ctx"] == 1024 and j["error"]["n_prompt_tokens"] > 1024
    with pytest.raises(openai.NotFoundError) as e:
        srv.client().chat.completions.create(model="gpt-9", messages=MSG)
    assert e.value.status_code == 404 and "gpt-9" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        srv.client().chat.completions.create(model="smollm2", messages=MSG, max_tokens=-1)
    assert_error(*srv.json("GET", "/nowhere"), 404, "not_found_error")
    assert_error(*srv.json("GET", CHAT), 405, "invalid_request_error")
    assert_error(*srv.json("POST", "/completion", {"prompt": [1, 10 ** 9]}), 400, "invalid_request_error")
    assert_error(*srv.json("POST", "/detokenize", {"tokens": ["a"]}), 400, "invalid_request_error")
    assert_error(*srv.json("POST", "/tokenize", {"content": 3}), 400, "invalid_request_error")
    assert_error(*srv.json("POST", "/completion", b'{"prompt": ' * 2000 + b'"x"' + b"}" * 2000), 400,
                 "invalid_request_error")
    assert srv.json("GET", "/health") == (200, {"status": "ok"})  # still serving


def test_serve_cli_errors_are_one_line(capsys, tmp_path, smollm2_path, srv):
    for args in (["-m", str(tmp_path / "missing.gguf")], ["-m", str(tmp_path / "missing.gguf"), "-np", "0"],
                 ["-m", str(smollm2_path), "-np", "0"], ["-m", str(smollm2_path), "--port", str(srv.port)]):
        code = main(["serve", *args])
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("llamacli: error:"), err


# -- the key, the queue, a disconnect, SIGTERM (one slot) -----------------------------------

def test_api_key(small):
    with pytest.raises(openai.AuthenticationError):
        small.client().chat.completions.create(model="smollm2", messages=MSG, max_tokens=2)
    assert_error(*small.json("GET", "/props"), 401, "authentication_error")
    assert_error(*small.json("GET", "/metrics", headers={"Authorization": "Bearer wrong"}), 401, "authentication_error")
    assert small.json("GET", "/health") == (200, {"status": "ok"})
    assert chat(small.client(KEY), "hi", max_tokens=2, temperature=0)
    assert small.json("GET", "/props", headers={"X-Api-Key": KEY})[0] == 200


def open_stream(srv, max_tokens: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A streamed chat whose first token has arrived (so it holds a slot)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    c.request("POST", CHAT, body=json.dumps({"messages": [{"role": "user", "content": "Tell me a long story."}],
                                             "stream": True, "max_tokens": max_tokens, "ignore_eos": True}),
              headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    r = c.getresponse()
    assert r.status == 200
    assert r.readline().startswith(b"data: ")  # the role chunk
    r.readline()
    assert b'"content"' in r.readline()  # a token
    return c, r


def wait_for(pred, what: str, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def test_full_queue_is_503_and_a_disconnect_frees_the_slot(small):
    auth = {"Authorization": f"Bearer {KEY}"}
    conn, _ = open_stream(small, 1000)  # holds the only slot
    pool = cf.ThreadPoolExecutor(1)
    waiting = pool.submit(small.json, "POST", CHAT, {"messages": MSG, "max_tokens": 3, "temperature": 0}, auth)

    wait_for(lambda: metrics(small, auth)["llamacpp:requests_deferred"] == 1, "the second request waits")
    status, j = small.json("POST", CHAT, {"messages": MSG, "max_tokens": 3}, auth)
    assert_error(status, j, 503, "unavailable_error")
    conn.close()  # the client goes away: its slot is free at once and the waiting request runs
    status, j = waiting.result(timeout=60)
    pool.shutdown()
    assert status == 200 and j["choices"][0]["message"]["content"]
    status, p = small.json("GET", "/props", headers=auth)
    assert p["default_generation_settings"]["is_processing"] is False


def test_a_client_that_leaves_a_plain_request_frees_its_slot(small):
    """No stream: the server notices the closed connection while it generates, and stops."""
    auth = {"Authorization": f"Bearer {KEY}"}
    predicted = lambda: metrics(small, auth)["llamacpp:tokens_predicted_total"]  # noqa: E731
    before = predicted()
    conn = http.client.HTTPConnection("127.0.0.1", small.port, timeout=120)
    conn.request("POST", CHAT, body=json.dumps({"messages": MSG, "max_tokens": 900, "ignore_eos": True}),
                 headers={"Content-Type": "application/json", **auth})
    wait_for(lambda: predicted() > before + 2, "generation starts")
    conn.close()
    wait_for(lambda: metrics(small, auth)["llamacpp:requests_processing"] == 0, "the slot is freed")
    assert predicted() - before < 800  # cut short, not the 900 tokens asked for


def test_sigterm_ends_the_stream_cleanly_and_exits(small):
    conn, r = open_stream(small, 1000)
    small.proc.send_signal(signal.SIGTERM)
    rest = r.read().decode()
    conn.close()
    assert rest.rstrip().endswith("data: [DONE]")
    assert '"finish_reason": "length"' in rest
    assert small.proc.wait(timeout=60) == 0
    assert "Traceback" not in small.stderr()


# -- the chat page in a real browser --------------------------------------------------------

def test_chat_page_in_headless_chromium(srv, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_bin, "chromium and chromium-driver are needed (.ci/run installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,700"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        d.get(srv.base + "/?temperature=0&max_tokens=40")
        assert d.title == "llamacli chat"
        box = d.find_element(By.ID, "input")
        box.send_keys(QUESTION)
        d.find_element(By.ID, "send").click()
        WebDriverWait(d, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".assistant[data-done='true']"))
        reply = d.find_element(By.CSS_SELECTOR, ".msg.assistant").text
        assert d.find_element(By.CSS_SELECTOR, ".msg.user").text == QUESTION
        assert not d.find_elements(By.CSS_SELECTOR, ".error")
        # the page's text is the API's reply (the browser drops trailing white space)
        assert reply == chat(srv.client(), QUESTION, temperature=0, max_tokens=40).strip()
        shot = Path(os.environ.get("LLAMACLI_SCREENSHOT", tmp_path / "chat.png"))
        d.save_screenshot(str(shot))
        assert shot.stat().st_size > 5000
    finally:
        d.quit()
