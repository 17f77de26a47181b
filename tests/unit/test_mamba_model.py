"""The Mamba LM against the paper and the official code: shapes, init, parameter count, causality,
recurrent decoding, optimizer groups."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from mambabench.models import LMHeadModel, generate, sample_next
from mambabench.models.mixers import Mamba
from mambabench.tasks.optim import build_param_groups


def small_model(vocab=16, d_model=32, n_layer=2, **mixer_kw) -> LMHeadModel:
    torch.manual_seed(0)
    return LMHeadModel(vocab, d_model, n_layer, partial(Mamba, **mixer_kw))


def test_param_count_of_the_released_130m_config() -> None:
    """mamba-130m: 24 x 768, vocab 50277 -> 50280; the official model has 129,135,360 parameters."""
    with torch.device("meta"):
        model = LMHeadModel(50277, 768, 24, partial(Mamba))
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert total == 129_135_360
    assert model.padded_vocab_size == 50280
    mixer = model.backbone.layers[0].mixer
    assert (mixer.d_inner, mixer.dt_rank, mixer.d_state, mixer.d_conv) == (1536, 48, 16, 4)


def test_official_initialisation() -> None:
    model = small_model(d_model=64, n_layer=4, d_state=8, dt_min=0.001, dt_max=0.1)
    mixer = model.backbone.layers[0].mixer
    expected_a = torch.log(torch.arange(1, 9, dtype=torch.float32)).repeat(128, 1)
    torch.testing.assert_close(mixer.A_log.data, expected_a)  # S4D-Real: A = -(n+1)
    torch.testing.assert_close(mixer.D.data, torch.ones(128))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias.data)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001  # softplus(bias) in [dt_min, dt_max]
    assert dt.log().std() > 0.5  # log-uniform spread, not a constant
    bound = mixer.dt_rank**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound
    # out_proj: kaiming-uniform(a=sqrt(5)) bound 1/sqrt(fan_in), divided by sqrt(n_layer)
    limit = 1 / math.sqrt(mixer.d_inner) / math.sqrt(4)
    assert mixer.out_proj.weight.abs().max() <= limit * 1.0001
    assert mixer.out_proj.weight.abs().max() > 0.8 * limit
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay and mixer.dt_proj.bias._no_reinit
    assert model.lm_head.weight is model.backbone.embedding.weight  # tied
    assert abs(model.backbone.embedding.weight.std().item() - 0.02) < 0.005


def test_no_weight_decay_groups() -> None:
    model = small_model()
    groups = {g["group_name"]: g for g in build_param_groups(model, weight_decay=0.1)}
    no_decay = {id(p) for p in groups["no_decay"]["params"]}
    decay = {id(p) for p in groups["decay"]["params"]}
    named = dict(model.named_parameters())
    for name, p in named.items():
        if name.endswith(("A_log", ".D", "bias")) or "norm" in name:
            assert id(p) in no_decay, name
        if name.endswith(("in_proj.weight", "out_proj.weight", "x_proj.weight")):
            assert id(p) in decay, name
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.1
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len({id(p) for p in model.parameters()})  # tied weight once


def test_optim_hook_gets_its_own_group() -> None:
    model = small_model()
    model.backbone.layers[0].mixer.x_proj.weight._optim = {"lr": 1e-4, "weight_decay": 0.0}
    groups = build_param_groups(model, weight_decay=0.1)
    hook = [g for g in groups if g["group_name"] == "hook"]
    assert len(hook) == 1 and hook[0]["lr"] == 1e-4 and hook[0]["weight_decay"] == 0.0


def test_causal_future_tokens_do_not_change_the_past() -> None:
    model = small_model().eval()
    x = torch.randint(0, 16, (2, 24))
    y = x.clone()
    y[:, 12:] = torch.randint(0, 16, (2, 12))
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_gradient_causality() -> None:
    """d output_t / d input_s == 0 for s > t (safari's numerical causality check)."""
    model = small_model().eval()
    emb = model.backbone.embedding(torch.randint(0, 16, (1, 10))).detach().requires_grad_()
    model.backbone.embedding.forward = lambda ids: emb  # feed embeddings directly
    out = model(torch.zeros(1, 10, dtype=torch.long))
    out[0, 4].sum().backward()
    assert emb.grad[0, 5:].abs().max() == 0
    assert emb.grad[0, :5].abs().max() > 0


@pytest.mark.parametrize("prompt_len", [1, 3, 7])
def test_step_by_step_equals_parallel_forward(prompt_len: int) -> None:
    model = small_model(d_state=4, d_conv=4).eval()
    x = torch.randint(0, 16, (3, 12))
    with torch.no_grad():
        full = model(x)
        caches = model.allocate_cache(3)
        pieces = [model(x[:, :prompt_len], caches=caches)]
        for t in range(prompt_len, 12):
            pieces.append(model.step(x[:, t], caches)[:, None])
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-5)


def test_generate_greedy_matches_argmax_of_forward() -> None:
    model = small_model().eval()
    prompt = torch.randint(0, 16, (2, 5))
    out = generate(model, prompt, max_new_tokens=6, temperature=0)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    with torch.no_grad():
        for t in range(5, 11):  # each generated token is the argmax given everything before it
            assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_sampling_filters() -> None:
    logits = torch.tensor([[5.0, 4.0, 1.0, -2.0]])
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits.repeat(200, 1), top_k=2, generator=g).tolist()) <= {0, 1}
    assert set(sample_next(logits.repeat(200, 1), top_p=0.5, generator=g).tolist()) == {0}
    with pytest.raises(ValueError, match="bad sampling settings"):
        sample_next(logits, top_p=0.0)


def test_bad_d_state_is_refused() -> None:
    with pytest.raises(ValueError, match="d_state=300 is out of range"):
        Mamba(d_model=16, d_state=300)


def test_vocab_padding_never_leaks_into_logits() -> None:
    model = small_model(vocab=13)
    assert model.padded_vocab_size == 16
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 13)
