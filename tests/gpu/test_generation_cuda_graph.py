"""On CUDA: greedy generation through the captured decode step == eager stepping == the argmax of the
parallel forward, for every recurrent model; the captured graph is reused and reset between calls."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from mambabench.models.generation import DecodeGraph, generate

MODELS = [
    ["model=mamba"],
    ["model=mamba", "model.mixer.inner_layer=s4_complex"],
    ["model=mamba", "model.mixer.inner_layer=hyena"],
    ["model=s4"],
    ["model=h3"],
    ["model=hyena"],
    ["model=rwkv"],
    ["model=retnet"],
    ["model=hybrid", "model.mixer.every=2"],
]
VOCAB = 37


def _model(make_config, overrides: list[str], dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    cfg = make_config([*overrides, "model.d_model=64", "model.n_layer=4"])
    with open_dict(cfg):
        if cfg.model.get("mixer", {}).get("n_heads") is not None:
            cfg.model.mixer.n_heads = 4
    torch.manual_seed(0)
    return instantiate(cfg.model, vocab_size=VOCAB).cuda().to(dtype).eval()


def _argmax_continuation(model: torch.nn.Module, prompt: torch.Tensor, new: int) -> torch.Tensor:
    ids = prompt
    with torch.inference_mode():
        for _ in range(new):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize("overrides", MODELS, ids=lambda o: "+".join(x.split("=")[-1] for x in o))
def test_graph_equals_eager_equals_parallel(make_config, overrides: list[str]) -> None:
    model = _model(make_config, overrides)
    prompt = torch.randint(0, VOCAB, (3, 9), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    graphed = generate(model, prompt, max_new_tokens=8, temperature=0, cuda_graph=True)
    eager = generate(model, prompt, max_new_tokens=8, temperature=0, cuda_graph=False)
    assert torch.equal(graphed, eager)
    assert torch.equal(graphed, _argmax_continuation(model, prompt, 8))
    if overrides[0] != "model=hybrid":  # attention caches become graph-safe with the static KV cache
        assert isinstance(model._decode_graph, DecodeGraph), model._decode_graph
    # the same shapes again: the graph is replayed on reset caches, with another prompt
    held = model._decode_graph
    other = (prompt + 1) % VOCAB
    again = generate(model, other, max_new_tokens=8, temperature=0, cuda_graph=True)
    assert model._decode_graph is held
    assert torch.equal(again, generate(model, other, max_new_tokens=8, temperature=0, cuda_graph=False))


def test_bf16_mamba_graph_equals_eager_bit_for_bit(make_config) -> None:
    model = _model(make_config, ["model=mamba", "model.mixer.d_state=16"], torch.bfloat16)
    prompt = torch.randint(0, VOCAB, (4, 33), device="cuda")
    graphed = generate(model, prompt, max_new_tokens=16, temperature=0, cuda_graph=True)
    eager = generate(model, prompt, max_new_tokens=16, temperature=0, cuda_graph=False)
    assert torch.equal(graphed, eager)


def test_sampling_outside_the_graph(make_config) -> None:
    model = _model(make_config, ["model=mamba"])
    prompt = torch.randint(0, VOCAB, (2, 5), device="cuda")
    runs = [
        generate(
            model,
            prompt,
            6,
            temperature=0.9,
            top_k=5,
            top_p=0.9,
            cuda_graph=graph,
            generator=torch.Generator("cuda").manual_seed(7),
        )
        for graph in (True, False)
    ]
    assert torch.equal(*runs)
