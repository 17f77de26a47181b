"""The lm-evaluation-harness adapter: its scores equal direct computations, and a local task through the
harness reports the accuracy computed here by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mambabench.data.tokenizers import ByteTokenizer
from mambabench.eval.lm_harness import HarnessLM, run_zeroshot
from mambabench.models.pretrained import network_from_released_config

TASK_DIR = Path(__file__).resolve().parents[1] / "data" / "zeroshot"


@pytest.fixture(scope="module")
def lm() -> HarnessLM:
    torch.manual_seed(0)
    network = network_from_released_config({"d_model": 32, "n_layer": 2, "vocab_size": 258})
    return HarnessLM(network, ByteTokenizer(), batch_size=3, max_length=64)


def _direct_logprob(lm: HarnessLM, context: list[int], continuation: list[int]) -> float:
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = F.log_softmax(lm.network(ids[:, :-1]).float(), -1)[0]
    positions = torch.arange(len(context) - 1, len(context) + len(continuation) - 1)
    return float(logprobs[positions, torch.tensor(continuation)].sum())


def test_loglikelihood_equals_direct_sum(lm: HarnessLM) -> None:
    requests = [("The cat sat on the", " mat"), ("Two plus", " two"), ("", "hello")]
    got = lm.loglikelihood(requests)
    tok = lm.tokenizer
    want = [
        _direct_logprob(lm, tok.encode("The cat sat on the"), tok.encode(" mat")),
        _direct_logprob(lm, tok.encode("Two plus"), tok.encode(" two")),
        _direct_logprob(lm, [tok.eos_id], tok.encode("hello")),
    ]
    assert [round(g[0], 4) for g in got] == pytest.approx([round(w, 4) for w in want], abs=1e-3)


def test_rolling_loglikelihood_sums_every_token(lm: HarnessLM) -> None:
    text = "a short document"  # fits one window
    tokens = [lm.tokenizer.eos_id, *lm.tokenizer.encode(text)]
    want = _direct_logprob(lm, tokens[:1], tokens[1:])
    assert lm.loglikelihood_rolling([(text,)])[0] == pytest.approx(want, abs=1e-3)
    long_text = "x" * 150  # three windows of 64
    assert lm.loglikelihood_rolling([(long_text,)])[0] < 0


def test_generate_until_is_greedy_with_the_recurrent_state(lm: HarnessLM) -> None:
    context = "abc"
    ids = [lm.tokenizer.eos_id, *lm.tokenizer.encode(context)]
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(lm.network(torch.tensor([ids]))[0, -1].argmax()))
    greedy = lm.tokenizer.decode([t for t in ids[4:] if t < 256])
    out = lm.generate_until([(context, {"until": [], "max_gen_toks": 6})])[0]
    assert out == greedy or ids[4:].count(lm.tokenizer.eos_id)  # EOS ends the text early
    stop = greedy[2:3]
    if stop:
        cut = lm.generate_until([(context, {"until": [stop], "max_gen_toks": 6})])[0]
        assert cut == greedy[: greedy.index(stop)]


def test_local_task_accuracy_matches_hand_computation(lm: HarnessLM, tmp_path: Path) -> None:
    pytest.importorskip("lm_eval", reason='needs lm-evaluation-harness: pip install -e ".[eval]"')
    data = TASK_DIR / "tiny_choice.jsonl"
    (tmp_path / "tiny_choice.yaml").write_text(
        (TASK_DIR / "tiny_choice.yaml.in").read_text().replace("@DATA@", str(data))
    )
    docs = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    tok, correct = lm.tokenizer, 0
    for doc in docs:
        scores = [
            _direct_logprob(lm, tok.encode(doc["question"]), tok.encode(" " + c)) for c in doc["choices"]
        ]
        correct += int(max(range(len(scores)), key=scores.__getitem__) == doc["answer"])
    results = run_zeroshot(
        lm.network,
        tok,
        ["mambabench_tiny_choice"],
        batch_size=4,
        max_length=64,
        include_path=str(tmp_path),
        device="cpu",
    )
    assert results["mambabench_tiny_choice"]["acc"] == pytest.approx(correct / len(docs))
