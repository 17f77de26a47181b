"""Positions of the induction-heads attention models (paper §4.1.2, Table 11).

MHA-Abs adds fixed sinusoidal positions (arXiv:1706.03762): no parameters, so the three MHA models have
the same count, and any test length works. xPos keeps finite scales at any length: sequences longer
than its span attend block by block with re-centred scales, equal to the absolute scales where those
are finite; the KV cache, which keeps absolute scales, refuses positions past its finite range.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from mambabench.models import LMHeadModel
from mambabench.models.mixers.attention import MHA, RotaryEmbedding
from mambabench.models.positions import SinusoidalPositions

pytestmark = pytest.mark.usefixtures("one_thread")

# our counts at the paper's induction-heads setting (vocab 16, 2 layers, D=64 Mamba / 128 the others),
# and the paper's Table 11 numbers; docs/models.md explains the differences
INDUCTION_PARAMS = {
    "mha_abs": (128, 134_912, 137e3),
    "mha_rope": (128, 134_912, 137e3),
    "mha_xpos": (128, 134_912, 137e3),
    "h3": (128, 249_728, 153e3),
    "hyena": (128, 308_352, 69e6),
    "mamba": (64, 66_496, 74e3),
}


@pytest.mark.parametrize("model", list(INDUCTION_PARAMS))
def test_induction_heads_parameter_counts(make_config, model) -> None:
    width, ours, paper = INDUCTION_PARAMS[model]
    cfg = make_config(["experiment=induction_heads/short", f"model={model}", f"model.d_model={width}"])
    with torch.device("meta"):
        network = instantiate(cfg.model, vocab_size=16)
    assert sum(p.numel() for p in network.parameters()) == ours
    if model.startswith("mha"):  # the paper's 137K within 2% (an untied 16 x 128 head would add 2,048)
        assert abs(ours - paper) / paper < 0.02
        assert not any("position" in name for name, _ in network.named_parameters())


def test_sinusoidal_positions_follow_the_transformer_formula() -> None:
    positions = torch.tensor([0, 1, 7, 4096, 2**20])
    table = SinusoidalPositions(8, std=1 / 2**0.5)(positions)  # amplitude 1
    i = torch.arange(4, dtype=torch.float64)
    angles = positions.double()[:, None] / 10000.0 ** (2 * i / 8)
    assert table.dtype == torch.float32 and table.shape == (5, 8)
    torch.testing.assert_close(table[:, 0::2], angles.sin().float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(table[:, 1::2], angles.cos().float(), atol=1e-6, rtol=0)


def test_sinusoidal_positions_start_at_the_embeddings_scale() -> None:
    table = SinusoidalPositions(128, std=0.02)(torch.arange(4096))
    assert abs(table.std().item() - 0.02) < 1e-3


def _mha_abs(d_model: int = 16) -> LMHeadModel:
    torch.manual_seed(0)
    mixer = lambda **kw: MHA(n_heads=2, pos_encoding="none", bias=True, **kw)  # noqa: E731
    return LMHeadModel(16, d_model, 2, mixer, sinusoidal_positions=True).eval()


def test_mha_abs_takes_lengths_past_any_table() -> None:
    model = _mha_abs()
    ids = torch.randint(0, 16, (1, 4100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids)
        shifted = model(ids[:, 1:])  # absolute positions: the same tokens one place earlier differ
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits[:, 1:], shifted, atol=1e-3)


def test_mha_abs_decoding_equals_forward() -> None:
    model = _mha_abs()
    ids = torch.randint(0, 16, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids)
        caches = model.allocate_cache(2)
        stepped = [model(ids[:, :4], caches=caches)] + [
            model.step(ids[:, t], caches)[:, None] for t in range(4, 9)
        ]
    torch.testing.assert_close(torch.cat(stepped, 1), logits, atol=1e-5, rtol=1e-5)


def test_learned_and_sinusoidal_positions_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="set max_seq_len=null for sinusoidal positions"):
        LMHeadModel(
            16,
            16,
            1,
            lambda **kw: MHA(n_heads=2, pos_encoding="none", **kw),
            max_seq_len=64,
            sinusoidal_positions=True,
        )


# ---------------------------------------------------------------------------------------------- xPos
def _xpos(scale_base: float = 512.0, d_model: int = 16) -> MHA:
    torch.manual_seed(0)
    return MHA(d_model, n_heads=2, pos_encoding="xpos", xpos_scale_base=scale_base, bias=True).eval()


def _absolute_xpos(mha: MHA, x: torch.Tensor) -> torch.Tensor:
    """xPos attention with the absolute scales q * zeta^(m/s), k * zeta^(-n/s) (finite at short lengths)."""
    q, k, v = mha.Wqkv(x).unflatten(-1, (3, mha.n_heads, mha.head_dim)).permute(2, 0, 3, 1, 4)
    rotary, pos = mha.rotary, torch.arange(x.shape[1], dtype=torch.float32)
    angles = pos[:, None] * rotary.inv_freq
    scale = rotary.zeta ** (pos / rotary.xpos_scale_base)[:, None]
    q, k = rotary._rotate(q, angles, scale), rotary._rotate(k, angles, 1.0 / scale)
    return mha.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2))


def _relative_xpos(mha: MHA, x: torch.Tensor) -> torch.Tensor:
    """float64 xPos attention from the distances m - n alone: q.k weighted by zeta^((m - n)/s)."""
    q, k, v = mha.Wqkv(x).double().unflatten(-1, (3, mha.n_heads, mha.head_dim)).permute(2, 0, 3, 1, 4)
    rotary, pos = mha.rotary, torch.arange(x.shape[1], dtype=torch.float64)
    angles = pos[:, None] * rotary.inv_freq.double()

    def rotate(t: torch.Tensor) -> torch.Tensor:
        a, b = t.chunk(2, -1)
        return torch.cat([a * angles.cos() - b * angles.sin(), a * angles.sin() + b * angles.cos()], -1)

    distance = pos[:, None] - pos[None, :]
    decay = rotary.zeta.double().repeat(2) ** (distance[..., None] / rotary.xpos_scale_base)
    scores = torch.einsum("bhmi,bhni,mni->bhmn", rotate(q), rotate(k), decay) / math.sqrt(mha.head_dim)
    y = scores.masked_fill(distance < 0, float("-inf")).softmax(-1) @ v
    return mha.out_proj(y.transpose(1, 2).flatten(2).float())


def test_xpos_equals_absolute_scales_at_short_lengths() -> None:
    mha = _xpos()
    x = torch.randn(2, 300, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(mha(x), _absolute_xpos(mha, x), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(mha(x), _relative_xpos(mha, x), atol=1e-5, rtol=1e-5)


def test_xpos_is_finite_and_exact_past_its_span() -> None:
    # scale_base 4 shrinks the span to 35 positions: 600 tokens overflow the absolute scales (2^-270)
    mha = _xpos(scale_base=4.0)
    assert mha.rotary.xpos_span() == 35
    x = torch.randn(1, 600, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.isfinite(_absolute_xpos(mha, x)).all()
        y = mha(x)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y, _relative_xpos(mha, x), atol=1e-5, rtol=1e-5)
        short = x[:, :200]  # where the absolute scales are still finite, both agree
        torch.testing.assert_close(mha(short), _absolute_xpos(mha, short), atol=1e-5, rtol=1e-4)


def test_xpos_block_scales_are_finite_up_to_2_to_20() -> None:
    rotary = RotaryEmbedding(16, xpos=True)  # the paper's constants: gamma 0.4, scale_base 512
    n = 2**20
    pos = torch.arange(n, dtype=torch.float32)
    assert not torch.isfinite(rotary.xpos_scale(pos[-1:]).reciprocal()).all()  # absolute k scale overflows
    span = rotary.xpos_span()
    for start in (0, span * (2**16 // span), n - n % span):
        q_scale, k_scale = rotary.xpos_block_scales(pos, start, min(start + span, n))
        assert torch.isfinite(q_scale).all() and torch.isfinite(k_scale).all()
        assert q_scale.max() <= 1 and q_scale.min() >= 2**-16 and k_scale.max() <= 2**16


def test_xpos_decoding_equals_the_blocked_forward() -> None:
    mha = _xpos(scale_base=4.0)  # span 35 < 100 tokens < cache limit 265
    x = torch.randn(1, 100, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = mha(x)
        cache = mha.allocate_cache(1, torch.float32, torch.device("cpu"), max_seqlen=100)
        stepped = [mha(x[:, :40], cache=cache)] + [mha.step(x[:, t], cache)[:, None] for t in range(40, 100)]
    torch.testing.assert_close(torch.cat(stepped, 1), full, atol=1e-5, rtol=1e-4)


def test_xpos_cache_past_its_finite_range_is_a_clear_error() -> None:
    mha = _xpos(scale_base=4.0)
    limit = mha.rotary.xpos_cache_limit(torch.float32)
    assert limit == 265
    with pytest.raises(ValueError, match="xPos with a KV cache holds at most 265 positions"):
        mha.allocate_cache(1, torch.float32, torch.device("cpu"), max_seqlen=limit + 1)
    cache = mha.allocate_cache(1, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        mha(torch.randn(1, limit, 16), cache=cache)
        with pytest.raises(ValueError, match="cacheless forward"):
            mha.step(torch.randn(1, 16), cache)
