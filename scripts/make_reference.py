"""Golden data from llama.cpp itself, through llama-cpp-python (the reference peer).

Run with the peer's interpreter, never with llamacli's (llamacli must not import llama_cpp):

    /work/peer-venv/bin/python scripts/make_reference.py [smollm2|gemma3|both]

Writes tests/golden/corpus.json (the tokenizer corpus, shared), tests/golden/reference.txt is
read (prose written for this project), and per model tests/golden/<model>/:
  tokens.json   ids of every corpus string with add_special=True, parse_special on and off;
                llama_detokenize of those ids; token_to_piece for a sample of ids; special ids
  logits.npz    teacher-forced logits of the first 320 tokens of reference.txt, one batch:
                top-64 ids and logits per position and the logsumexp of the full row
  greedy.json   32 greedy tokens after each of a few prompts
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CACHE = Path.home() / ".cache" / "llamacli"
MODELS = {
    "smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf",
}
N_LOGIT_TOKENS = 320
TOP_K = 64
N_GREEDY = 32
GREEDY_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Water boils at a temperature of",
    "Q: What is 12 plus 30?\nA:",
    "Les fleurs du jardin sont",
]


# -- the tokenizer corpus ----------------------------------------------------------------------

def build_corpus() -> list[str]:
    fixed = [
        "", " ", "  ", "   ", "a", "A", "Hello", "Hello world", "Hello, world!", " Hello", "Hello ",
        "  leading spaces", "trailing spaces   ", "\tleading tab", "trailing tab\t",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
        "I'M here", "don't", "DON'T", "WE'LL see", "we'll", "You're", "YOU'RE", "they've",
        "They'VE", "it's", "IT'S", "He'd", "HE'D", "I'm", "'s", "'t", "'re", "'", "''", "'''",
        "rock'n'roll", "O'Neil's cat", "'quoted'", "Don't you think it's 'fine'?",
        "she said: 'I'LL go'", "l'homme", "L'HOMME", "’smart quotes’", "can’t",
        "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789",
        "1234567890", "12345678901234567890", "3.14159", "1,000,000", "-42", "+7", "0x1F",
        "1e-9", "2024-01-01", "10:45 PM", "$19.99", "€5", "50%", "v1.2.3", "ID: 0042",
        "phone 555-0199", "a1b2c3", "1st 2nd 3rd 4th", "٣٤٥ Arabic-Indic digits",
        "१२३ Devanagari digits", "½ ¼ ² ³ Ⅻ", "①②③",
        "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\t", "\t\t", " \n ", "a\nb", "a\n\nb",
        "a  b", "a   b", "a    b", "a\t\tb", "a \t b", "word \n\n next", "line1\r\nline2",
        "end.\n", "  \n  \n", "x" + " " * 17 + "y", " " * 40, "\n" * 40, "\t \t \t",
        "non\u00a0breaking space", "ideographic\u3000space", "em\u2003space", "zero\u200bwidth",
        "line\u2028separator", "next\u0085line",
        "你好，世界！", "我爱北京天安门。", "日本語のテキストです。", "カタカナとひらがな",
        "한국어 문장입니다.", "مرحبا بالعالم", "اللغة العربية جميلة", "שלום עולם",
        "नमस्ते दुनिया", "हिन्दी भाषा", "สวัสดีชาวโลก", "Привет, мир!", "ПРИВЕТ МИР",
        "Γειά σου Κόσμε", "ΑΒΓΔ αβγδ", "Tiếng Việt có dấu", "வணக்கம் உலகம்", "გამარჯობა",
        "Բարեւ աշխարհ", "Ελληνικά και English mixed", "e\u0301 combining acute", "Zoë Åsa Ñandú",
        "straße STRASSE", "İstanbul ıi", "\U00031350\U00031351 CJK ext H", "\U0002EBF0 CJK ext I",
        "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️‍🔥", "🇫🇷🇯🇵", "emoji 🎉 in text",
        "🫨 shaking face", "©®™", "→ ← ↑ ↓", "∑∫√∞≈≠", "♠♣♥♦", "★☆✓✗",
        "def add(a, b):\n    return a + b\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}",
        '{"key": "value", "n": 42, "list": [1, 2, 3]}',
        "<div class=\"box\"><p>Hi</p></div>", "SELECT * FROM users WHERE id = 7;",
        "#include <stdio.h>\nint main(void) { return 0; }", "x = [i**2 for i in range(10)]",
        "if (a && b || !c) return;", "ls -la /usr/bin | grep py", "^[a-z]+@[a-z]+\\.com$",
        "camelCaseIdentifier", "snake_case_variable", "SCREAMING_SNAKE", "kebab-case-name",
        "https://example.com/path?q=1&r=2#frag", "user@example.org", "C:\\Windows\\System32",
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are helpful.<|im_end|>", "<|im_start|>user", "<|im_end|>",
        "<|endoftext|>", "text<|endoftext|>more", "<|im_start|><|im_start|>", "x<|im_end|>y",
        "<|im_start", "im_start|>", "< |im_start| >",
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<start_of_turn>",
        "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<unused0>", "<unused99>",
        "[multimodal]", "</s>", "<s>", "<reponame>repo<file_sep>", "<jupyter_code>print(1)",
        "<bos>Hello", "Hello<eos>", " <start_of_turn>", "<start_of_turn> user",
        "\x00", "\x00\x01\x02\x03", "\x7f", "\x1b[31mred\x1b[0m", "\ufffd", "\uffff", "\ufeffBOM",
        "ÿþ", "Ã©Ã¨", "\x1c\x1d\x1e\x1f", "\u200d", "\u202eRTL override", "\ue000 private use",
        "a" * 300, "supercalifragilisticexpialidocious" * 5, "ab" * 200, "9" * 100, "🙂" * 50,
        "Pneumonoultramicroscopicsilicovolcanoconiosis", "ThisIsAVeryLongCamelCaseWordIndeed" * 3,
        "...", "?!", "!!!", "---", "___", "***", "--- ... ---", "a.b.c", "(nested (parens))",
        " ?", " !", " .", " ,", "Hello ,world . How are you ?", "word 's", "word 're", "a ' b",
    ]
    rng = random.Random(1234)
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + list(" \t\n\r'\".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`")
        + list("éüñçøßÆœ你好世界日本한국مرحبאבגनमस्тедΓδ😀🎉👍🏽\u200d\u00a0\u3000½²①")
        + ["'s", "'T", "'re", "'LL", "  ", "\n\n", "<|im_start|>", "<end_of_turn>", "123"]
    )
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(60)]
    corpus = fixed + fuzz
    assert len(corpus) >= 200, len(corpus)
    return corpus


# -- llama-cpp-python helpers ------------------------------------------------------------------

def _piece(llama_cpp, vocab, tid: int, special: bool) -> bytes:
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tid, buf, len(buf), 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, tid, buf, len(buf), 0, special)
    return buf.raw[:n]


def _detokenize(llama_cpp, vocab, ids: list[int], special: bool) -> bytes:
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, size, False, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, -n, False, special)
    return buf.raw[:n]


def make_tokens(name: str, path: Path, corpus: list[str]) -> None:
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    entries = []
    for text in corpus:
        ids_sp = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        ids_nosp = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        entries.append({
            "special": ids_sp,
            "no_special": ids_nosp,
            "detok": _detokenize(llama_cpp, vocab, ids_nosp, False).hex(),
            "detok_special": _detokenize(llama_cpp, vocab, ids_sp, True).hex(),
        })
    rng = random.Random(99)
    attr = [int(llama_cpp.llama_vocab_get_attr(vocab, i)) for i in range(n_vocab)]
    sample = set(range(min(600, n_vocab)))
    sample |= {i for i, a in enumerate(attr) if a & (1 | 2 | 8 | 16 | 32)}  # unk/unused/control/user/byte
    sample |= set(rng.sample(range(n_vocab), min(4000, n_vocab)))
    pieces = {
        str(i): [_piece(llama_cpp, vocab, i, False).hex(), _piece(llama_cpp, vocab, i, True).hex()]
        for i in sorted(sample)
    }
    data = {
        "model": path.name,
        "llama_cpp_version": llama_cpp.__version__,
        "call": "llm.tokenize(text.encode('utf-8'), add_bos=True, special=True|False); "
                "llama_detokenize(vocab, ids, n, buf, size, remove_special=False, unparse_special=...)",
        "n_vocab": n_vocab,
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "bos": int(llama_cpp.llama_vocab_bos(vocab)),
        "eos": int(llama_cpp.llama_vocab_eos(vocab)),
        "eot": int(llama_cpp.llama_vocab_eot(vocab)),
        "eog_ids": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "entries": entries,
        "pieces": pieces,
    }
    out = GOLDEN / name / "tokens.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=True, separators=(",", ":")))
    print(f"{out}: {len(entries)} strings, {len(pieces)} pieces", file=sys.stderr)


def _topk_record(logits: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K].astype(np.int32)
    top_logits = np.take_along_axis(logits, top, axis=1).astype(np.float32)
    l64 = logits.astype(np.float64)
    m = l64.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(l64 - m).sum(axis=1))).astype(np.float32)
    rows = np.array([hashlib.sha256(np.ascontiguousarray(r, dtype=np.float32).tobytes()).hexdigest() for r in logits])
    return {f"{prefix}topk_ids": top, f"{prefix}topk_logits": top_logits, f"{prefix}logsumexp": lse,
            f"{prefix}row_sha256": rows}


def make_logits(name: str, path: Path) -> None:
    """Teacher-forced logits of the reference text, two ways:

    * one token per llama_decode (n_batch = 1): llama.cpp's decode path, the numerics `run`
      generates with; stored as topk_ids / topk_logits / logsumexp / row_sha256 (the sha256
      of each full float32 row, to count bit-identical rows);
    * all tokens in one llama_decode (batch_*): the prompt-processing path, whose batched
      kernels (tinyBLAS, tiled k-quants) sum in another order.
    """
    import llama_cpp
    from llama_cpp import Llama

    text = (GOLDEN / "reference.txt").read_text(encoding="utf-8")
    llm = Llama(model_path=str(path), n_ctx=512, n_batch=1, n_ubatch=1, logits_all=True,
                n_threads=2, verbose=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)[:N_LOGIT_TOKENS]
    assert len(tokens) == N_LOGIT_TOKENS
    llm.reset()
    llm.eval(tokens)  # n_batch = 1: one llama_decode per token
    single = np.asarray(llm.scores[:N_LOGIT_TOKENS], dtype=np.float32).copy()
    del llm
    llm = Llama(model_path=str(path), n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True,
                n_threads=2, verbose=False)
    llm.reset()
    llm.eval(tokens)  # n_batch = 512 > 320: one llama_decode call
    batch = np.asarray(llm.scores[:N_LOGIT_TOKENS], dtype=np.float32).copy()
    del llm
    out = GOLDEN / name / "logits.npz"
    np.savez_compressed(out, tokens=np.asarray(tokens, dtype=np.int32), **_topk_record(single),
                        **_topk_record(batch, "batch_"))
    print(f"{out}: {out.stat().st_size} bytes; llama_cpp {llama_cpp.__version__}", file=sys.stderr)


def make_greedy(name: str, path: Path) -> None:
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=2, seed=0, verbose=False)
    runs = []
    for prompt in GREEDY_PROMPTS:
        prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        out_ids: list[int] = []
        stopped = False
        for tid in llm.generate(prompt_ids, temp=0.0, repeat_penalty=1.0, reset=True):
            out_ids.append(int(tid))
            if llm._model.token_eos() == tid or llama_cpp.llama_vocab_is_eog(llm._model.vocab, tid):
                stopped = True
                break
            if len(out_ids) == N_GREEDY:
                break
        text = llm.detokenize(out_ids).decode("utf-8", errors="replace")
        runs.append({"prompt": prompt, "prompt_ids": prompt_ids, "ids": out_ids, "text": text,
                     "stopped_at_eog": stopped})
    data = {
        "model": path.name,
        "llama_cpp_version": llama_cpp.__version__,
        "call": ("llm = Llama(model_path, n_ctx=512, n_batch=512, n_threads=2, seed=0); "
                 "ids = llm.tokenize(prompt.encode(), add_bos=True, special=True); "
                 f"llm.generate(ids, temp=0.0, repeat_penalty=1.0, reset=True), first {N_GREEDY} "
                 "tokens or up to and including the first end-of-generation token"),
        "runs": runs,
    }
    out = GOLDEN / name / "greedy.json"
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    print(f"{out}: {len(runs)} prompts", file=sys.stderr)


SAMPLING_CONFIGS = {
    "default": dict(temp=0.8, top_k=40, top_p=0.95, min_p=0.05, typical=1.0, last_n=64, repeat=1.0, freq=0.0, present=0.0),
    "hot": dict(temp=1.5, top_k=64, top_p=1.0, min_p=0.0, typical=1.0, last_n=64, repeat=1.0, freq=0.0, present=0.0),
    "penalties": dict(temp=0.8, top_k=40, top_p=0.95, min_p=0.05, typical=1.0, last_n=16, repeat=1.3, freq=0.2, present=0.1),
    "typical": dict(temp=1.0, top_k=50, top_p=1.0, min_p=0.0, typical=0.9, last_n=64, repeat=1.0, freq=0.0, present=0.0),
    "greedy": dict(temp=0.0, top_k=40, top_p=0.95, min_p=0.05, typical=1.0, last_n=64, repeat=1.0, freq=0.0, present=0.0),
}
SAMPLING_SEEDS = (1, 42, 1234)
SAMPLING_STEPS = 100


def make_sampling(name: str) -> None:
    """llama.cpp's sampler chain (common_sampler's default order) run over the golden top-64
    candidates of the first positions, one chain per (config, seed), accepting each pick."""
    import llama_cpp as L

    data = np.load(GOLDEN / name / "logits.npz")
    ids, logits = data["topk_ids"], data["topk_logits"]
    runs = []
    for cname, c in SAMPLING_CONFIGS.items():
        for seed in SAMPLING_SEEDS:
            chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
            n_vocab = int(ids.max()) + 1
            for smpl in (L.llama_sampler_init_penalties(n_vocab, c["last_n"], c["repeat"], c["freq"], c["present"]),
                         L.llama_sampler_init_top_k(c["top_k"]),
                         L.llama_sampler_init_typical(c["typical"], 0),
                         L.llama_sampler_init_top_p(c["top_p"], 0),
                         L.llama_sampler_init_min_p(c["min_p"], 0),
                         L.llama_sampler_init_temp_ext(c["temp"], 0.0, 1.0),
                         L.llama_sampler_init_dist(seed)):
                L.llama_sampler_chain_add(chain, smpl)
            picks = []
            for pos in range(SAMPLING_STEPS):
                arr = (L.llama_token_data * TOP_K)()
                for i in range(TOP_K):
                    arr[i].id = int(ids[pos, i])
                    arr[i].logit = float(logits[pos, i])
                    arr[i].p = 0.0
                cur = L.llama_token_data_array(data=arr, size=TOP_K, selected=-1, sorted=False)
                L.llama_sampler_apply(chain, ctypes.byref(cur))
                tok = int(arr[cur.selected].id)
                L.llama_sampler_accept(chain, tok)
                picks.append(tok)
            L.llama_sampler_free(chain)
            runs.append({"config": cname, "params": c, "seed": seed, "picks": picks})
    out = GOLDEN / name / "sampling.json"
    out.write_text(json.dumps({"llama_cpp_version": L.__version__, "steps": SAMPLING_STEPS,
                               "candidates": f"top-{TOP_K} of logits.npz, in descending order", "runs": runs}))
    print(f"{out}: {len(runs)} runs", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="both", choices=[*MODELS, "both"])
    ap.add_argument("--only", choices=["tokens", "logits", "greedy", "sampling"], help="make one kind of data")
    args = ap.parse_args(argv)
    corpus = build_corpus()
    (GOLDEN / "corpus.json").write_text(json.dumps(corpus, ensure_ascii=True, indent=0))
    names = list(MODELS) if args.model == "both" else [args.model]
    for name in names:
        path = MODELS[name]
        if not path.exists():
            print(f"{path}: missing (run scripts/fetch_models.py)", file=sys.stderr)
            return 1
        if args.only in (None, "tokens"):
            make_tokens(name, path, corpus)
        if args.only in (None, "logits"):
            make_logits(name, path)
        if args.only in (None, "greedy"):
            make_greedy(name, path)
        if args.only in (None, "sampling"):
            make_sampling(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
