"""Several sequences in one step (Model.eval_seqs, the server's parallel slots): each gets the
logits it would get alone. For SmolLM2 bit for bit: its Q4_1 and Q8_0 kernels compute every row
on its own whatever the batch, the element-wise ops are row-wise and each row's attention reads
its own cache. Gemma-3's Q4_K and Q6_K weights take ggml's batched kernels (the repacked gemm
from 4 rows, the tiled matmul from 8), whose float order depends on the batch's size, as in
llama-server: there they agree closely (the same top token)."""

from __future__ import annotations

import numpy as np
import pytest

from llamacli.errors import LlamacliError
from llamacli.model.transformer import load_model

PROMPTS = [[1, 504, 3458, 282, 4649, 314], [1, 17, 30, 12, 4], [1, 2000, 9, 77, 511, 8, 100, 260, 1530]]
FOLLOW = [[28, 9, 314, 1900], [16, 16, 800, 3], [2, 3, 4, 5]]  # teacher-forced tokens after each prompt


def alone(m, prompt, follow) -> list[np.ndarray]:
    """Logits after the prompt, then after each following token: the State's own cache, one
    sequence, the single-sequence path."""
    m.state.reset()
    out = [m.eval(prompt)[0].copy()]
    for t in follow:
        out.append(m.eval([t])[0].copy())
    return out


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def model(request):
    return load_model(request.getfixturevalue(f"{request.param}_path"), n_ctx=64, n_batch=32, n_threads=2)


@pytest.fixture(scope="module")
def smollm2_model(smollm2_path):
    """The model whose kernels give every row the same bits whatever the batch."""
    return load_model(smollm2_path, n_ctx=64, n_batch=32, n_threads=2)


def test_gemma3_sequences_in_one_step_get_their_own_top_token(gemma3_path):
    """Batched kernels (not bit-identical to alone): after the prompts, each sequence's most
    likely next token is the one it gets alone, and its logits are close."""
    m = load_model(gemma3_path, n_ctx=64, n_batch=32, n_threads=2)
    want = [alone(m, p, [])[0] for p in PROMPTS]
    got = m.eval_seqs([(m.new_cache(), p) for p in PROMPTS])
    for i in range(len(PROMPTS)):
        assert got[i].argmax() == want[i].argmax()
        assert np.abs(got[i] - want[i]).max() < 0.1 * np.abs(want[i]).max()


def test_three_sequences_in_one_step_get_their_own_logits_bit_for_bit(smollm2_model):
    model = smollm2_model
    m = model
    want = [alone(m, p, f) for p, f in zip(PROMPTS, FOLLOW)]
    caches = [m.new_cache() for _ in PROMPTS]
    # the three prompts in one step (rows of unequal counts), then one token each a step
    got = m.eval_seqs(list(zip(caches, PROMPTS)))
    for i in range(3):
        assert np.array_equal(got[i], want[i][0]), f"sequence {i} after its prompt"
    for step in range(len(FOLLOW[0])):
        got = m.eval_seqs([(c, [f[step]]) for c, f in zip(caches, FOLLOW)])
        for i in range(3):
            assert np.array_equal(got[i], want[i][step + 1]), f"sequence {i}, step {step}"
    assert [c.n_past for c in caches] == [len(p) + len(f) for p, f in zip(PROMPTS, FOLLOW)]


def test_a_prompt_joins_a_step_of_decoding_sequences(smollm2_model):
    model = smollm2_model
    """A new sequence's prompt rides along with the others' one-token steps, as llama-server
    mixes prompt processing into decoding; the State itself can be one of the sequences."""
    m = model
    want = [alone(m, p, f) for p, f in zip(PROMPTS, FOLLOW)]
    a, b = m.state, m.new_cache()
    a.reset()
    m.eval_seqs([(a, PROMPTS[0]), (b, PROMPTS[1])])
    got = m.eval_seqs([(a, FOLLOW[0][:1]), (b, FOLLOW[1][:1])])
    assert np.array_equal(got[0], want[0][1]) and np.array_equal(got[1], want[1][1])
    c = m.new_cache()
    got = m.eval_seqs([(b, FOLLOW[1][1:2]), (c, PROMPTS[2]), (a, FOLLOW[0][1:2])])
    assert np.array_equal(got[0], want[1][2])
    assert np.array_equal(got[1], want[2][0])
    assert np.array_equal(got[2], want[0][2])


def test_a_truncated_sequence_reuses_its_prefix(model):
    """A slot keeps the common prefix of its last prompt and evaluates the rest."""
    m = model
    want = alone(m, PROMPTS[0], FOLLOW[0])
    c = m.new_cache()
    m.eval_seqs([(c, PROMPTS[2])])
    c.truncate(1)  # both start with BOS
    got = m.eval_seqs([(c, PROMPTS[0][1:])])
    assert np.array_equal(got[0], want[0])


def test_bad_batches_are_refused(model):
    m = model
    c = m.new_cache()
    with pytest.raises(LlamacliError, match="twice"):
        m.eval_seqs([(c, [1]), (c, [2])])
    with pytest.raises(LlamacliError, match="nothing"):
        m.eval_seqs([])
    with pytest.raises(LlamacliError, match="batch size"):
        m.eval_seqs([(c, [1] * 20), (m.new_cache(), [1] * 20)])
    with pytest.raises(LlamacliError, match="context full"):
        m.eval_seqs([(c, [1] * 65)])
    with pytest.raises(LlamacliError, match="out of range"):
        m.eval_seqs([(c, [m.cfg.n_vocab])])
    assert c.n_past == 0
