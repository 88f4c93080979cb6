"""Conversation mode (`run -cnv`): templates against llama.cpp's renderings (tests/golden/chat.json,
from scripts/make_chat_reference.py), the template sandbox, multi-turn sessions against
llama.cpp's greedy replies, the KV cache reuse, and a session driven through a pseudo-terminal."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamacli.chat_template import BUILTIN, ChatTemplate, choose_template
from llamacli.cli import main
from llamacli.errors import LlamacliError
from llamacli.generate import Generator
from llamacli.gguf_io import open_gguf
from llamacli.sampling import SamplerParams
from llamacli.tokenizer import load_tokenizer
from llamacli.conversation import Session

from synthetic import write_tiny_llama

G = json.loads((Path(__file__).parent / "golden" / "chat.json").read_text())


def run(capsys, monkeypatch, stdin: str, *args):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("llamacli: error:"), err


# the tiny synthetic model has no template, and spells ChatML's markers out letter by letter
TINY_TEMPLATE = ["--chat-template", "{% for m in messages %}{{ m.content }} {% endfor %}"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


# -- templates -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_templates_render_as_llama_cpp(name):
    tmpl = ChatTemplate(BUILTIN[name], name)
    for conv, (with_prompt, without) in zip(G["conversations"], G["builtin"][name], strict=True):
        assert tmpl.render(conv, add_generation_prompt=True) == with_prompt
        assert tmpl.render(conv, add_generation_prompt=False) == without


def test_gguf_template_renders_and_tokenizes_as_llama_cpp(smollm2_path):
    gf = open_gguf(smollm2_path)
    tok = load_tokenizer(gf)
    tmpl, note = choose_template(gf, tok)
    assert tmpl.name == "gguf" and note is None
    ref = G["gguf"]["smollm2"]
    for conv, text, ids in zip(G["conversations"], ref["renders"], ref["ids"], strict=True):
        assert tmpl.render(conv) == text
        assert tok.encode(text, add_special=True, parse_special=True) == ids


def test_model_without_template_uses_chatml_with_a_warning(gemma3_path):
    gf = open_gguf(gemma3_path)
    assert gf.get("tokenizer.chat_template") is None
    tmpl, note = choose_template(gf, load_tokenizer(gf))
    assert "ChatML" in note
    assert [tmpl.render(c) for c in G["conversations"]] == [r[0] for r in G["builtin"]["chatml"]]


def test_bos_written_by_the_template_is_not_doubled(gemma3_path):
    gf = open_gguf(gemma3_path)
    tok = load_tokenizer(gf)
    src = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}"
    tmpl, _ = choose_template(gf, tok, src)
    text = tmpl.render([{"role": "user", "content": "Hi"}])
    assert text == "<start_of_turn>user\nHi<end_of_turn>\n"  # llama.cpp strips it: the vocab adds a BOS
    ids = tok.encode(text, add_special=True, parse_special=True)
    assert ids.count(tok.vocab.special["bos"]) == 1


def test_unknown_builtin_name_is_refused(gemma3_path):
    gf = open_gguf(gemma3_path)
    with pytest.raises(LlamacliError, match="unknown chat template 'gemma9'"):
        choose_template(gf, load_tokenizer(gf), "gemma9")


MALICIOUS = {
    "python internals": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "os through globals": "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "mutating the input": "{% set x = messages.append({'role': 'x'}) %}",
    "string bomb": "{{ 'a' * 100000000 }}",
    "doubling bomb": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "huge range": "{{ range(10**9) | list }}",
    "huge power": "{{ 10 ** 100000 }}",
    "raise_exception": "{{ raise_exception('no system role') }}",
    "syntax error": "{% for m in messages %}{{ m.content",
}


@pytest.mark.parametrize("what", sorted(MALICIOUS))
def test_malicious_or_broken_template_is_one_error_and_runs_nothing(capsys, monkeypatch, tmp_path, tiny, what):
    marker = tmp_path / "MARKER"
    src = MALICIOUS[what].replace("{marker}", str(marker))
    code, out, err = run(capsys, monkeypatch, "", "-m", tiny, "-cnv", "--chat-template", src, "-p", "hi")
    one_line_error(code, err)
    assert "chat template" in err and "Traceback" not in err
    assert not marker.exists()


# -- sessions --------------------------------------------------------------------------------

def session_args(model: str) -> list:
    spec = G["replies"][model]
    # the golden's path: one token per step (its prompt too), no flash attention
    args = ["-cnv", "--temp", 0, "-n", G["n_reply"], "-c", 512, "-fa", "off", "-b", 1]
    if spec["template"] != "gguf":
        args += ["--chat-template", spec["template"]]
    if spec["system"]:
        args += ["-sys", spec["system"]]
    return args


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_piped_two_turn_session_gives_llama_cpp_replies(capsys, monkeypatch, request, model):
    turns = G["replies"][model]["turns"]
    path = request.getfixturevalue(f"{model}_path")
    stdin = "".join(t["user"] + "\n" for t in turns)
    code, out, err = run(capsys, monkeypatch, stdin, "-m", path, *session_args(model))
    assert code == 0, err
    assert out == "".join(t["reply"] + "\n" for t in turns)  # stdout holds the replies alone
    assert err.count("[ Prompt: ") == 2 and "Exiting..." in err


def test_session_keeps_the_cache_and_evaluates_only_new_tokens(smollm2_path):
    turns = G["replies"]["smollm2"]["turns"]
    gen = Generator(smollm2_path, n_ctx=512, n_threads=2)
    tmpl, _ = choose_template(gen.model.gguf, gen.tokenizer)
    s = Session(gen, tmpl, SamplerParams(temp=0.0), n_predict=G["n_reply"])
    out1, st1 = s.reply(turns[0]["user"])
    assert out1 == turns[0]["reply_ids"]
    assert (st1.n_reused, st1.n_evaluated) == (0, len(turns[0]["prompt_ids"]))

    out2, st2 = s.reply(turns[1]["user"])
    assert s.prompt_ids()[:st2.n_prompt] == turns[1]["prompt_ids"][:st2.n_prompt]
    assert out2 == turns[1]["reply_ids"]  # llama.cpp's reply, computed there from scratch
    first = turns[0]["prompt_ids"] + turns[0]["reply_ids"]
    assert st2.n_prompt == len(turns[1]["prompt_ids"])
    assert st2.n_reused >= len(turns[0]["prompt_ids"]) + len(turns[0]["reply_ids"]) - 1
    assert turns[1]["prompt_ids"][:st2.n_reused] == first[:st2.n_reused]
    assert st2.n_evaluated == st2.n_prompt - st2.n_reused < 20

    s.regen()  # the conversation up to the last user message is all in the cache
    out3, st3 = s.reply(None)
    assert out3 == out2 and st3.n_evaluated == 1

    s.clear()  # a new conversation; its common start (the system prompt) is still cached
    out4, st4 = s.reply(turns[0]["user"])
    assert out4 == turns[0]["reply_ids"]
    assert 0 < st4.n_reused < len(turns[0]["prompt_ids"])


def test_regen_without_a_reply_and_clear(capsys, monkeypatch, tiny):
    code, out, err = run(capsys, monkeypatch, "/regen\n/clear\nthe\n/exit\nnever read\n",
                         "-m", tiny, "-cnv", "-n", 4, "-s", 1, "--ignore-eos")
    assert code == 0
    assert "no message to regenerate" in err and "Chat history cleared." in err
    assert err.count("[ Prompt: ") == 1  # one reply; /exit ended the session before "never read"


def test_single_turn_answers_the_prompt_and_exits(capsys, monkeypatch, tiny):
    code, out, err = run(capsys, monkeypatch, "not read\n", "-m", tiny, "-cnv", "-st", "-p", "the", "-n", 4, "-s", 1,
                         "--ignore-eos")
    assert code == 0
    assert err.count("[ Prompt: ") == 1 and len(out.splitlines()) == 1


def test_a_prompt_beyond_the_context_is_refused_and_the_session_goes_on(capsys, monkeypatch, tiny):
    code, out, err = run(capsys, monkeypatch, "the " * 100 + "\nthe\n", "-m", tiny, "-cnv", *TINY_TEMPLATE, "-c", 64, "-n", 4, "-s", 1,
                         "--ignore-eos")
    assert code == 0
    assert "prompt is too long" in err and err.count("[ Prompt: ") == 1
    code, out, err = run(capsys, monkeypatch, "", "-m", tiny, "-cnv", "-st", "-c", 64, "-p", "the " * 100)
    assert code == 1 and "prompt is too long" in err


def test_a_reply_that_fills_the_context_stops_with_a_message(capsys, monkeypatch, tiny):
    code, out, err = run(capsys, monkeypatch, "the\nthe\n", "-m", tiny, "-cnv", *TINY_TEMPLATE, "-c", 48, "-s", 1, "--ignore-eos")
    assert code == 0
    assert "context full (48 tokens)" in err
    assert "prompt is too long" in err  # the second turn no longer fits


@pytest.mark.parametrize("flag", [["-sys", "x"], ["-st"], ["--chat-template", "chatml"]])
def test_conversation_flags_need_cnv(capsys, monkeypatch, tiny, flag):
    code, out, err = run(capsys, monkeypatch, "", "-m", tiny, "-p", "the", *flag)
    one_line_error(code, err)
    assert "needs -cnv" in err


def test_two_turns_through_a_pseudo_terminal(smollm2_path):
    pexpect = pytest.importorskip("pexpect")  # a test dependency; installed by `make test`
    turns = G["replies"]["smollm2"]["turns"]
    args = ["-m", "llamacli", "run", "-m", str(smollm2_path), *map(str, session_args("smollm2"))]
    child = pexpect.spawn(sys.executable, args, encoding="utf-8", timeout=180)
    try:
        for t in turns:
            child.expect_exact("> ")
            child.sendline(t["user"])
            child.expect_exact(t["reply"])
            child.expect(r"\[ Prompt: [0-9.]+ t/s \| Generation: [0-9.]+ t/s \]")
        child.expect_exact("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_a_reply_and_the_session_goes_on(smollm2_path):
    pexpect = pytest.importorskip("pexpect")
    args = ["-m", "llamacli", "run", "-m", str(smollm2_path), "-cnv", "--ignore-eos", "-c", 2048, "-s", 7]
    # once through first, so that the kernels are compiled and cached: a SIGINT that lands while
    # Numba compiles is swallowed by llvmlite's callback
    subprocess.run([sys.executable, *map(str, args), "-n", "8"], input="Hi\n", capture_output=True, text=True,
                   timeout=600)
    child = pexpect.spawn(sys.executable, list(map(str, args)), encoding="utf-8", timeout=180)
    try:
        child.expect_exact("> ")
        child.sendline("Tell me a long story.")
        child.expect_exact("story.\r\n")  # the echo of the line
        child.expect(r"\w+\W+\w+\W+\w+")  # the reply is streaming
        child.sendintr()
        child.expect_exact("[ interrupted ]")
        child.expect_exact("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_a_ctrl_c_whose_raise_was_lost_still_stops_the_reply(tiny):
    """A KeyboardInterrupt raised inside a C callback (llvmlite's) is printed and dropped; the
    flag the SIGINT handler leaves behind stops the reply at the next token all the same."""
    from llamacli import generate

    gen = Generator(tiny, n_ctx=512, n_threads=1)
    tmpl, _ = choose_template(gen.model.gguf, gen.tokenizer)
    s = Session(gen, tmpl, SamplerParams(temp=0.0), n_predict=20, ignore_eos=True)
    picks: list[int] = []

    def lose_a_ctrl_c(t: int) -> None:
        picks.append(t)
        if len(picks) == 3:
            try:
                generate._on_sigint(2, None)  # what the handler does, inside a callback that swallows it
            except KeyboardInterrupt:
                pass

    got, st = s.reply("the", on_token=lose_a_ctrl_c)
    assert st.interrupted and got == picks and len(got) == 3
    got, st = s.reply("the")  # the next turn runs to its end
    assert not st.interrupted and len(got) == 20
