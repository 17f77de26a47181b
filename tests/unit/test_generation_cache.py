"""Every recurrent model's decode step updates its caches in place on the device (what CUDA-graph
capture needs), and the captured caches can be put back to their allocation values before a prefill."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from mambabench.models.generation import (
    _initial_values,
    allocate_cache,
    generate,
    host_side_cache_changes,
    reset_caches,
)
from mambabench.models.mixers.attention import MHA

RECURRENT = [
    ["model=mamba"],
    ["model=mamba", "model.mixer.inner_layer=s4_complex"],
    ["model=mamba", "model.mixer.inner_layer=hyena"],
    ["model=s4"],
    ["model=h3"],
    ["model=hyena"],
    ["model=rwkv"],
    ["model=retnet"],
]


def _model(make_config, overrides: list[str]) -> torch.nn.Module:
    cfg = make_config([*overrides, "model.d_model=16", "model.n_layer=2"])
    with open_dict(cfg):
        if cfg.model.get("mixer", {}).get("n_heads") is not None:
            cfg.model.mixer.n_heads = 2
    torch.manual_seed(0)
    return instantiate(cfg.model, vocab_size=13).eval()


@pytest.mark.parametrize("overrides", RECURRENT, ids=lambda o: "+".join(x.split("=")[-1] for x in o))
def test_step_updates_caches_in_place_and_reset_restores_them(make_config, overrides: list[str]) -> None:
    model = _model(make_config, overrides)
    ids = torch.randint(0, 13, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        caches = allocate_cache(model, 2, None, max_seqlen=9)
        fresh = [[t.clone() for t in _tensors(c)] for c in caches]
        initial = _initial_values(caches)
        model(ids, caches=caches)
        assert host_side_cache_changes(model, caches, ids[:, -1], n_steps=2) == []
        reset_caches(initial)
        for cache, tensors in zip(caches, fresh):
            for now, then in zip(_tensors(cache), tensors):
                assert torch.equal(now, then)
        # after a reset, decoding again gives the same tokens as with new caches
        first = model(ids, caches=caches)[:, -1]
        torch.testing.assert_close(first, model(ids)[:, -1])


def test_hybrid_only_attention_caches_may_change_on_the_host(make_config) -> None:
    model = _model(make_config, ["model=hybrid", "model.n_layer=4", "model.mixer.every=2"])
    ids = torch.randint(0, 13, (2, 5))
    attention_layers = {i for i, layer in enumerate(model.backbone.layers) if isinstance(layer.mixer, MHA)}
    with torch.inference_mode():
        caches = allocate_cache(model, 2, None, max_seqlen=9)
        model(ids, caches=caches)
        changed = host_side_cache_changes(model, caches, ids[:, -1], n_steps=1)
    assert all(int(path[1 : path.index("]")]) in attention_layers for path in changed), changed


def test_cuda_graph_request_on_cpu_steps_eagerly(make_config) -> None:
    model = _model(make_config, ["model=mamba"])
    prompt = torch.randint(0, 13, (2, 3))
    out = generate(model, prompt, max_new_tokens=3, temperature=0, cuda_graph=True)
    assert torch.equal(out, model.generate(prompt, 3, temperature=0, cuda_graph=False))
    assert getattr(model, "_decode_graph", None) is None


def _tensors(cache: object) -> list[torch.Tensor]:
    from mambabench.models.generation import _fields

    return [v for _, v in _fields(cache) if isinstance(v, torch.Tensor)]


class _GrowingCacheModel(torch.nn.Module):
    """A stand-in whose step does what a CUDA graph cannot replay: it grows a tensor with torch.cat
    and counts tokens in a Python int."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def step(self, token: torch.Tensor, caches: list) -> torch.Tensor:
        caches[0].history = torch.cat([caches[0].history, token[:, None].float()], dim=1)
        caches[1].offset += 1
        return torch.zeros(token.shape[0], 3)


def test_host_side_changes_are_named() -> None:
    from mambabench.models.lm import PositionCounter
    from mambabench.models.mixers.hyena import LongConvCache

    caches = [LongConvCache(torch.zeros(2, 0), torch.zeros((), dtype=torch.long)), PositionCounter()]
    changed = host_side_cache_changes(_GrowingCacheModel(), caches, torch.zeros(2, dtype=torch.long))
    assert changed == ["[0].history", "[1].offset"]


def test_initial_values_keep_fill_values_and_copy_small_non_uniform_tensors() -> None:
    fill = torch.full((2, 3), -1e4)
    arbitrary = torch.arange(6.0).view(2, 3)
    big = torch.arange(40.0)
    initial = _initial_values([fill, arbitrary, big], copy_limit_bytes=64)
    for t in (fill, arbitrary, big):
        t.add_(1)
    reset_caches(initial)
    assert torch.equal(fill, torch.full((2, 3), -1e4)) and torch.equal(
        arbitrary, torch.arange(6.0).view(2, 3)
    )
    assert torch.equal(big, torch.zeros(40))  # a large non-uniform buffer (uninitialised KV memory) is zeroed
