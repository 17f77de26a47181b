"""The attention KV cache: preallocated buffers updated in place, positions from a device counter.

Decoding with a static cache (what CUDA-graph decoding captures) and with a growing one equals the
parallel forward, token for token, for the MHA position encodings, Transformer++ and the Mamba-attention
hybrid; chunked prompts, the counter and overflow are checked on tiny CPU models.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from mambabench.models import generate
from mambabench.models.mixers.attention import MHA, AttentionCache, RotaryEmbedding

VOCAB = 16
PRESETS = ["mha_abs", "mha_rope", "mha_xpos", "transformerpp", "hybrid"]


def _model(make_config, preset: str, d_model: int = 32, extra: tuple[str, ...] = ()) -> torch.nn.Module:
    overrides = [f"model={preset}", f"model.d_model={d_model}", "model.n_layer=2", *extra]
    if preset == "hybrid":
        overrides.append("model.mixer.every=2")  # layer 1 is attention
    cfg = make_config(overrides)
    with open_dict(cfg):
        mixer = cfg.model.mixer.get("secondary", cfg.model.mixer)
        mixer.n_heads = 4
    torch.manual_seed(0)
    return instantiate(cfg.model, vocab_size=VOCAB).eval()


def static_caches(model: torch.nn.Module, batch_size: int, max_seqlen: int) -> list[Any]:
    """The model's caches with every attention layer's cache preallocated for ``max_seqlen`` tokens."""
    caches = model.allocate_cache(batch_size)
    param = next(model.parameters())
    return [
        layer.mixer.allocate_cache(batch_size, param.dtype, param.device, max_seqlen=max_seqlen)
        if isinstance(layer.mixer, MHA)
        else cache
        for layer, cache in zip(model.backbone.layers, caches)
    ] + caches[len(model.backbone.layers) :]


def _attention_caches(caches: list[Any]) -> list[AttentionCache]:
    return [c for c in caches if isinstance(c, AttentionCache)]


@pytest.mark.parametrize("preset", PRESETS)
def test_static_cache_step_equals_forward(make_config, preset) -> None:
    model = _model(make_config, preset)
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids)
        caches = static_caches(model, 2, max_seqlen=11)
        assert _attention_caches(caches), "the preset has no attention layer"
        stepped = [model(ids[:, :4], caches=caches)]
        stepped += [model.step(ids[:, t], caches)[:, None] for t in range(4, 11)]
    torch.testing.assert_close(torch.cat(stepped, 1), logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("static", [True, False], ids=["static", "growing"])
def test_chunked_prompt_equals_forward(make_config, static) -> None:
    """Prefill, prefill again (a prompt in two chunks), then steps: same logits as the parallel forward."""
    model = _model(make_config, "transformerpp")
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(ids)
        caches = static_caches(model, 2, max_seqlen=12) if static else model.allocate_cache(2)
        out = [model(ids[:, :5], caches=caches), model(ids[:, 5:9], caches=caches)]
        out += [model.step(ids[:, t], caches)[:, None] for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(out, 1), logits, atol=1e-4, rtol=1e-4)


def test_counter_advances_on_device_and_host(make_config) -> None:
    model = _model(make_config, "transformerpp")
    ids = torch.randint(0, VOCAB, (3, 7))
    caches = static_caches(model, 3, max_seqlen=20)
    cache = _attention_caches(caches)[0]
    assert cache.key.shape == (3, 4, 32, 8)  # capacity rounded up to a multiple of 16
    with torch.no_grad():
        model(ids[:, :5], caches=caches)
        assert int(cache.seqlen) == 5 and cache.host_seqlen == 5
        buffers = cache.key.data_ptr(), cache.value.data_ptr()
        model.step(ids[:, 5], caches)
        model.step(ids[:, 6], caches)
    assert int(cache.seqlen) == 7 and cache.host_seqlen == 7
    assert (cache.key.data_ptr(), cache.value.data_ptr()) == buffers, "buffers were reallocated"
    assert cache.key[:, :, 7:].abs().sum() == 0, "wrote past the counter"


def test_prefill_after_untracked_steps_reads_device_counter(make_config) -> None:
    """After steps replayed by a CUDA graph the host copy is unknown; a prefill then reads the counter."""
    model = _model(make_config, "transformerpp")
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(ids)
        caches = static_caches(model, 1, max_seqlen=9)
        out = [model(ids[:, :3], caches=caches), model.step(ids[:, 3], caches)[:, None]]
        for cache in _attention_caches(caches):
            cache.host_seqlen = None
        out.append(model(ids[:, 4:], caches=caches))
    torch.testing.assert_close(torch.cat(out, 1), logits, atol=1e-4, rtol=1e-4)


def test_overflow_is_a_clear_error(make_config) -> None:
    model = _model(make_config, "transformerpp")
    ids = torch.randint(0, VOCAB, (1, 8))
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"overflow.*max_seqlen=6.*prompt length \+ new tokens"):
            model(ids[:, :7], caches=static_caches(model, 1, max_seqlen=6))
        caches = static_caches(model, 1, max_seqlen=6)
        model(ids[:, :5], caches=caches)
        model.step(ids[:, 5], caches)  # the sixth token fits
        with pytest.raises(ValueError, match="overflow"):
            model.step(ids[:, 6], caches)


@pytest.mark.parametrize("preset", ["transformerpp", "hybrid"])
def test_greedy_generation_equals_argmax(make_config, preset) -> None:
    model = _model(make_config, preset)
    prompt = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(4))
    new = 6
    with torch.no_grad():
        ref = prompt
        for _ in range(new):
            ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], 1)
        # static cache, the loop a CUDA graph would replay
        caches = static_caches(model, 2, max_seqlen=prompt.shape[1] + new)
        logits = model(prompt, caches=caches)[:, -1]
        tokens = [prompt]
        for _ in range(new):
            tokens.append(logits.argmax(-1, keepdim=True))
            logits = model.step(tokens[-1][:, 0], caches)
    assert torch.equal(torch.cat(tokens, 1), ref)
    assert torch.equal(generate(model, prompt, max_new_tokens=new, temperature=0), ref)  # growing cache


@pytest.mark.parametrize("xpos", [False, True])
def test_rotary_counter_offset_equals_int_offset(xpos) -> None:
    rotary = RotaryEmbedding(8, xpos=xpos)
    q, k = torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    expected = rotary(q, k, 5)
    got = rotary(q, k, torch.tensor(5))
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


@pytest.mark.parametrize(("preset", "static"), [("transformerpp", True), ("hybrid", False)])
def test_triton_decode_step_equals_forward(make_config, preset, static) -> None:
    """The fused decode kernel (under the Triton interpreter here) in the model's step; xPos and the
    split-K merging are covered by tests/kernels/test_decode_attention.py."""
    pytest.importorskip("triton")
    key = "model.mixer.secondary.decode_backend" if preset == "hybrid" else "model.mixer.decode_backend"
    model = _model(make_config, preset, d_model=64, extra=(f"{key}=triton",))  # head_dim 16
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(ids)
        caches = static_caches(model, 2, max_seqlen=9) if static else model.allocate_cache(2)
        stepped = [model(ids[:, :4], caches=caches)]
        stepped += [model.step(ids[:, t], caches)[:, None] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(stepped, 1), logits, atol=1e-4, rtol=1e-4)
    assert all(int(c.seqlen) == 9 for c in _attention_caches(caches))


def test_rotary_tables_stay_fp32_in_a_bf16_model(make_config) -> None:
    model = _model(make_config, "transformerpp").to(torch.bfloat16)
    rotary = model.backbone.layers[0].mixer.rotary
    assert rotary.inv_freq.dtype == torch.float32 and rotary.zeta.dtype == torch.float32
    torch.testing.assert_close(rotary.inv_freq, RotaryEmbedding(8).inv_freq, atol=0, rtol=0)


def test_capture_branch_keeps_host_out_of_the_loop(make_config, monkeypatch) -> None:
    """Under CUDA-graph capture (faked here) the step never reads the counter on the host: the host copy
    is dropped, results stay right, and a growing cache refuses clearly."""
    from mambabench.models.mixers import attention

    model = _model(make_config, "transformerpp")
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        logits = model(ids)
        caches = static_caches(model, 2, max_seqlen=8)
        out = [model(ids[:, :5], caches=caches)]
        monkeypatch.setattr(attention, "_capturing", lambda: True)
        monkeypatch.setattr(AttentionCache, "tokens_so_far", lambda self: pytest.fail("host sync in capture"))
        out += [model.step(ids[:, t], caches)[:, None] for t in range(5, 8)]
        assert all(c.host_seqlen is None and int(c.seqlen) == 8 for c in _attention_caches(caches))
        with pytest.raises(RuntimeError, match="max_seqlen"):
            model.step(ids[:, 0], model.allocate_cache(2))
    torch.testing.assert_close(torch.cat(out, 1), logits, atol=1e-4, rtol=1e-4)


def test_reset_reuses_the_buffers_for_a_new_sequence(make_config) -> None:
    model = _model(make_config, "transformerpp")
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(ids)
        caches = static_caches(model, 2, max_seqlen=12)
        model(ids.flip(1), caches=caches)  # an earlier, longer sequence
        model.step(ids[:, 0], caches)
        buffers = [c.key.data_ptr() for c in _attention_caches(caches)]
        for cache in _attention_caches(caches):
            cache.reset()
        out = [model(ids[:, :3], caches=caches)] + [
            model.step(ids[:, t], caches)[:, None] for t in range(3, 8)
        ]
    assert [c.key.data_ptr() for c in _attention_caches(caches)] == buffers
    torch.testing.assert_close(torch.cat(out, 1), logits, atol=1e-4, rtol=1e-4)


def test_rotary_tables_follow_the_default_device_and_stay_fp32() -> None:
    """Tables are built on the default device of a ``with torch.device(...)`` block (never meta) and
    stay fp32 after a bf16 cast."""
    from mambabench.models.mixers.attention import RotaryEmbedding

    with torch.device("meta"):
        rotary = RotaryEmbedding(16)
    assert rotary.inv_freq.device.type == "cpu"
    rotary = RotaryEmbedding(16).to(torch.bfloat16)
    assert rotary.inv_freq.dtype == torch.float32
