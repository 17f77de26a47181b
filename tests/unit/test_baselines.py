"""Baseline architectures: parameter counts of the paper's sizes, causality, and recurrent decoding
(prefill + step) equal to the parallel forward for every model preset and inner-layer variant."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from mambabench.models import generate
from mambabench.models.mixers.attention import MHA
from mambabench.models.mixers.mamba import Mamba

VOCAB_GPT2 = 50257  # the scaling laws and ablations use the GPT-2 tokenizer (Table 12)

# (model preset, size preset, vocab, paper's parameter count, where the number is from)
PARAM_COUNTS = [
    ("transformerpp", "transformerpp_125m", VOCAB_GPT2, 125e6, "Table 12"),
    ("transformerpp", "transformerpp_350m", VOCAB_GPT2, 350e6, "Table 12"),
    ("transformerpp", "transformerpp_760m", VOCAB_GPT2, 760e6, "Table 12"),
    ("transformerpp", "transformerpp_1b3", VOCAB_GPT2, 1.3e9, "Table 12"),
    ("transformer", "transformerpp_125m", VOCAB_GPT2, 125e6, "Table 12 (GPT-3 125M)"),
    ("transformer", "transformerpp_350m", VOCAB_GPT2, 350e6, "Table 12 (GPT-3 350M)"),
    ("mamba", None, 50277, 130e6, "released mamba-130m (Table 12 125M row)"),
    ("mamba", "mamba_370m", VOCAB_GPT2, 371.5e6, "Tables 9/10 default (350M row)"),
    ("mamba", "mamba_790m", 50277, 790e6, "released mamba-790m (760M row)"),
    ("mamba", "mamba_1b4", 50277, 1.4e9, "released mamba-1.4b (1.3B row)"),
    ("hyena", "hyena_125m", VOCAB_GPT2, 125e6, "Table 12 125M (1.5x layers, MLP x2)"),
    ("hyena", "hyena_350m", VOCAB_GPT2, 350e6, "Table 12 350M (1.5x layers, MLP x2)"),
    ("h3pp", "h3pp_125m", VOCAB_GPT2, 125e6, "Table 12 125M (1.5x layers, MLP x2)"),
    ("h3pp", "h3pp_350m", VOCAB_GPT2, 350e6, "Table 12 350M (1.5x layers, MLP x2)"),
]

# Table 9 (dt_rank; "-" = no input-dependent delta) and Table 10 (N) at the 350M Mamba, in millions.
ABLATION_COUNTS = [
    (["model.mixer.selective_delta=false"], 358.9),
    (["model.mixer.dt_rank=1"], 359.1),
    (["model.mixer.dt_rank=4"], 359.7),
    (["model.mixer.dt_rank=16"], 362.1),
    (["model.mixer.dt_rank=64"], 371.5),
    (["model.mixer.d_state=1"], 367.1),
    (["model.mixer.d_state=4"], 368.0),
    (["model.mixer.d_state=8"], 369.1),
    (["model.mixer.d_state=1", "model.mixer.selective_B=false", "model.mixer.selective_C=false"], 367.1),
]


def _count(make_config, overrides: list[str], vocab: int) -> int:
    cfg = make_config(overrides)
    with torch.device("meta"):
        model = instantiate(cfg.model, vocab_size=vocab)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("model", "size", "vocab", "paper", "source"), PARAM_COUNTS)
def test_parameter_counts_match_paper(make_config, model, size, vocab, paper, source) -> None:
    overrides = [f"model={model}"] + (
        [f"+model/size={size}"] if size else ["model.d_model=768", "model.n_layer=24"]
    )
    n = _count(make_config, overrides, vocab)
    assert abs(n - paper) / paper < 0.03, f"{model} {size}: {n / 1e6:.1f}M vs {paper / 1e6:.0f}M ({source})"


@pytest.mark.parametrize(("overrides", "paper_m"), ABLATION_COUNTS)
def test_ablation_parameter_counts_match_tables_9_10(make_config, overrides, paper_m) -> None:
    n = _count(make_config, ["model=mamba", "+model/size=mamba_370m", *overrides], VOCAB_GPT2)
    assert abs(n / 1e6 - paper_m) < 0.15, f"{overrides}: {n / 1e6:.2f}M vs paper {paper_m}M"


# every architecture preset (small) and the inner-layer / ablation variants that change the recurrence
ARCHITECTURES = [
    ["model=mamba"],
    ["model=transformerpp"],
    ["model=transformer"],
    ["model=mha_abs"],
    ["model=mha_rope"],
    ["model=mha_xpos"],
    ["model=s4"],
    ["model=s4", "model.mixer.A_init=s4d_real", "model.mixer.gate=true"],
    ["model=h3"],
    ["model=h3", "model.mixer.inner_layer=s6"],
    ["model=h3", "model.mixer.inner_layer=hyena"],
    ["model=h3pp"],
    ["model=hyena"],
    ["model=hybrid", "model.mixer.every=2"],
    ["model=mamba", "model.mixer.A_init=s4d_lin"],
    [
        "model=mamba",
        "model.mixer.A_init=s4d_lin",
        "model.mixer.selective_B=false",
        "model.mixer.selective_C=false",
    ],
    ["model=mamba", "model.mixer.selective_delta=false", "model.mixer.selective_B=false"],
    ["model=mamba", "model.mixer.gate=false"],
    ["model=mamba", "model.mixer.inner_layer=s4_complex"],
    ["model=mamba", "model.mixer.inner_layer=hyena"],
]
_EXTRA = {"model=rwkv": ["model=rwkv"], "model=retnet": ["model=retnet"]}


def _small_model(make_config, overrides: list[str]) -> torch.nn.Module:
    cfg = make_config([*overrides, "model.d_model=32"])
    with open_dict(cfg):
        if cfg.model.get("mixer", {}).get("n_heads") is not None:
            cfg.model.mixer.n_heads = 4
    torch.manual_seed(0)
    return instantiate(cfg.model, vocab_size=16).eval()


def _archs() -> list[list[str]]:
    from tests.conftest import config_options

    extra = [v for k, v in _EXTRA.items() if k.split("=")[1] in config_options("model")]
    return ARCHITECTURES + extra


@pytest.mark.parametrize("overrides", _archs(), ids=lambda o: "+".join(x.split("=")[-1] for x in o))
def test_causal_and_step_equals_forward(make_config, overrides) -> None:
    model = _small_model(make_config, overrides)
    torch.manual_seed(1)
    ids = torch.randint(0, 16, (2, 12))
    with torch.no_grad():
        logits = model(ids)
        changed = ids.clone()
        changed[:, 7:] = (changed[:, 7:] + 1) % 16
        assert torch.allclose(model(changed)[:, :7], logits[:, :7], atol=1e-5), (
            "future tokens changed the past"
        )
        caches = model.allocate_cache(2)
        stepped = [model(ids[:, :5], caches=caches)]
        for t in range(5, 12):
            stepped.append(model.step(ids[:, t], caches)[:, None])
        torch.testing.assert_close(torch.cat(stepped, 1), logits, atol=1e-4, rtol=1e-4)


def test_generate_greedy_matches_full_forward(make_config) -> None:
    for overrides in (
        ["model=transformer"],
        ["model=h3"],
        ["model=hyena"],
        ["model=rwkv"],
        ["model=retnet"],
        ["model=s4"],
        ["model=hybrid", "model.mixer.every=2"],
    ):
        model = _small_model(make_config, overrides)
        prompt = torch.randint(0, 16, (2, 4))
        out = generate(model, prompt, max_new_tokens=4, temperature=0)
        with torch.no_grad():
            ref = prompt
            for _ in range(4):
                ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], 1)
        assert torch.equal(out, ref), overrides


def test_hybrid_ratio_reaches_layers(make_config) -> None:
    model = _small_model(make_config, ["model=hybrid", "model.n_layer=8", "model.mixer.every=4"])
    kinds = [type(layer.mixer) for layer in model.backbone.layers]
    assert kinds == [Mamba, Mamba, Mamba, MHA] * 2


def test_learned_absolute_positions_are_bounded(make_config) -> None:
    model = _small_model(
        make_config, ["model=mha_abs", "model.sinusoidal_positions=false", "model.max_seq_len=8"]
    )
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
