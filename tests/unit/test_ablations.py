"""Ablation presets (Tables 1, 6-10): each declares a multirun sweep, every swept value reaches the
built network (checked on the module, not on the config), and every variant runs a training step."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from mambabench.models.mixers.h3 import H3
from mambabench.models.mixers.hyena import HyenaInner
from mambabench.models.mixers.inner import S6Inner
from mambabench.models.mixers.mamba import Mamba
from mambabench.models.mixers.s4 import S4D
from mambabench.models.mixers.s4d import S4DInner

PRESETS = ["table1/paper", "table1/mini", "table6", "table7", "table8", "table9", "table10"]

INNER_TYPES = {"s6": S6Inner, "s4_complex": S4DInner, "s4_real": S4DInner, "hyena": HyenaInner}
# Table 1 rows: model option -> (mixer class, inner-layer class or None for Mamba's own S6)
TABLE1_ROWS = {
    "table1/s4_nogate": (S4D, S4DInner),
    "table1/s6_nogate": (S4D, S6Inner),
    "table1/h3_s4": (H3, S4DInner),
    "table1/h3_hyena": (H3, HyenaInner),
    "table1/h3_s6": (H3, S6Inner),
    "table1/mamba_s4": (Mamba, S4DInner),
    "table1/mamba_hyena": (Mamba, HyenaInner),
    "table1/mamba_s6": (Mamba, type(None)),
}


def _sweep(make_config, preset: str) -> dict[str, list[str]]:
    cfg = make_config([f"experiment=ablations/{preset}"])
    assert cfg.hydra.mode.name == "MULTIRUN", f"{preset} must declare a multirun"
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


def _build(make_config, overrides: list[str]) -> torch.nn.Module:
    cfg = make_config(overrides)
    return instantiate(cfg.model, vocab_size=16)


def _inner(mixer: torch.nn.Module) -> torch.nn.Module | None:
    if isinstance(mixer, S4D):
        return mixer.ssm
    return mixer.inner


def _check(mixer: torch.nn.Module, key: str, value: str) -> None:
    """Assert that override ``key=value`` is visible on a built mixer."""
    if key == "model.mixer.inner_layer":
        inner = _inner(mixer)
        if value == "s6" and isinstance(mixer, Mamba):
            assert inner is None and mixer.x_proj is not None
        else:
            assert isinstance(inner, INNER_TYPES[value])
            if value.startswith("s4_"):
                assert inner.is_complex == (value == "s4_complex")
    elif key == "model.mixer.selective_delta":
        assert (mixer.dt_proj is not None) == (value == "true")
        assert hasattr(mixer, "dt_bias") == (value == "false")
    elif key in ("model.mixer.selective_B", "model.mixer.selective_C"):
        name = key[-1]
        assert (name in mixer._parameters) == (value == "false")
        width = mixer._split[1 if name == "B" else 2]
        assert width == (mixer.bc_width if value == "true" else 0)
    elif key == "model.mixer.A_init":
        assert mixer.is_complex == (value == "s4d_lin")
        assert mixer.A_init == value
    elif key == "model.mixer.dt_rank":
        rank = int(value)
        if rank == 0:
            assert mixer.dt_proj is None
        else:
            assert mixer.dt_proj.weight.shape == (mixer.d_inner, rank)
            assert mixer.x_proj.weight.shape[0] == rank + 2 * mixer.d_state
    elif key == "model.mixer.d_state":
        assert mixer.A_log.shape[-1] == int(value)
    elif key == "model":
        if value in TABLE1_ROWS:
            mixer_cls, inner_cls = TABLE1_ROWS[value]
            assert isinstance(mixer, mixer_cls) and isinstance(_inner(mixer), inner_cls)
        else:
            assert isinstance(mixer, {"h3": H3, "mamba": Mamba}[value])
    else:
        raise AssertionError(f"no module check for swept key {key}")


@pytest.mark.parametrize("preset", PRESETS)
def test_swept_values_reach_the_module(make_config, preset: str) -> None:
    sweep = _sweep(make_config, preset)
    assert sweep, f"{preset} sweeps nothing"
    base = [f"experiment=ablations/{preset}", "model.n_layer=1"]
    for key, values in sweep.items():
        for value in values:
            model = _build(make_config, [*base, f"{key}={value}"])
            mixer = model.backbone.layers[0].mixer
            _check(mixer, key, value)
            # and the variant trains: one forward/backward on a short batch
            logits = model(torch.randint(0, 16, (2, 16)))
            logits.logsumexp(-1).mean().backward()
            assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_table10_switches_b_and_c_together(make_config) -> None:
    model = _build(
        make_config,
        ["experiment=ablations/table10", "model.mixer.selective_B=false", "model.mixer.d_state=4"],
    )
    mixer = model.backbone.layers[0].mixer
    assert mixer.B.shape == mixer.C.shape == (mixer.d_inner, 4) and mixer.x_proj.weight.shape[0] == 64


def test_a_init_values() -> None:
    """Table 8's initialisations, on real tensors."""
    for A_init, expected_real in [
        ("s4d_real", -(torch.arange(4) + 1.0)),
        ("s4d_lin_real", -0.5 * torch.ones(4)),
        ("s4d_lin", -0.5 * torch.ones(4)),
    ]:
        m = Mamba(8, d_state=4, A_init=A_init)
        torch.testing.assert_close(m._a_matrix().real[0] if m.is_complex else m._a_matrix()[0], expected_real)
    assert torch.allclose(Mamba(8, d_state=4, A_init="s4d_lin").A_imag[0], math.pi * torch.arange(4.0))
    rand = Mamba(8, d_state=4, A_init="random")._a_matrix()
    assert (rand < 0).all() and rand.std() > 0
