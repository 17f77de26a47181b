"""Attention decoding on a GPU: the Triton decode kernel, the SDPA step and a CUDA-graph-captured step.

    MAMBABENCH_KERNEL_DEVICE=cuda pytest tests/gpu/test_attention_decode_gpu.py -q

Skipped without CUDA (and under ``TRITON_INTERPRET=1``, which the default CPU test run sets).
"""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mambabench.models import LMHeadModel, generate
from mambabench.models.mixers.attention import MHA, AttentionCache, RotaryEmbedding
from mambabench.models.mlp import GatedMLP

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") == "1",
        reason="Triton interpreter on: run with MAMBABENCH_KERNEL_DEVICE=cuda",
    ),
]
VOCAB = 1000


def _transformerpp(decode_backend: str, dtype: torch.dtype = torch.float32) -> LMHeadModel:
    torch.manual_seed(0)
    model = LMHeadModel(
        VOCAB,
        d_model=256,
        n_layer=4,
        mixer=partial(MHA, n_heads=4, decode_backend=decode_backend),  # head_dim 64
        mlp=partial(GatedMLP),
    )
    return model.to("cuda", dtype).eval()


def _static_caches(model: LMHeadModel, batch: int, max_seqlen: int) -> list[AttentionCache]:
    param = next(model.parameters())
    return [
        layer.mixer.allocate_cache(batch, param.dtype, param.device, max_seqlen=max_seqlen)
        for layer in model.backbone.layers
    ]


@pytest.fixture(autouse=True)
def _exact_fp32():
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.parametrize("pos_encoding", ["rope", "xpos", "none"])
@pytest.mark.parametrize("batch", [1, 8])
def test_kernel_equals_sdpa_at_a_long_cache(pos_encoding, batch) -> None:
    """Split-K kernel against rotary + SDPA at the benchmark's cache size (2048 + 128), bf16."""
    from mambabench.kernels.decode_attention import decode_attention_triton

    heads, head_dim, capacity, n = 32, 64, 2176, 2100
    torch.manual_seed(0)
    rotary = None if pos_encoding == "none" else RotaryEmbedding(head_dim, xpos=pos_encoding == "xpos").cuda()
    qkv = torch.randn(batch, 3 * heads * head_dim, device="cuda", dtype=torch.bfloat16)
    k_cache = torch.randn(batch, heads, capacity, head_dim, device="cuda", dtype=torch.bfloat16)
    v_cache = torch.randn_like(k_cache)
    q, k, v = qkv.view(batch, 3, heads, 1, head_dim).unbind(1)
    if rotary is not None:
        q, k = rotary(q, k, n)
    ref_k = k_cache.clone()
    ref_k[:, :, n : n + 1] = k
    ref_v = v_cache.clone()
    ref_v[:, :, n : n + 1] = v
    ref = F.scaled_dot_product_attention(q, ref_k[:, :, : n + 1], ref_v[:, :, : n + 1]).flatten(1)
    out = decode_attention_triton(
        qkv,
        k_cache,
        v_cache,
        torch.tensor(n, device="cuda"),
        inv_freq=None if rotary is None else rotary.inv_freq,
        zeta=None if pos_encoding != "xpos" else rotary.zeta,
    )
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(k_cache[:, :, n], ref_k[:, :, n], atol=2e-2, rtol=2e-2)
    assert torch.equal(v_cache[:, :, n], ref_v[:, :, n])


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_step_equals_forward_and_greedy_equals_argmax(backend) -> None:
    model = _transformerpp(backend)
    ids = torch.randint(0, VOCAB, (3, 40), device="cuda")
    with torch.no_grad():
        logits = model(ids)
        caches = _static_caches(model, 3, max_seqlen=40)
        stepped = [model(ids[:, :24], caches=caches)]
        stepped += [model.step(ids[:, t], caches)[:, None] for t in range(24, 40)]
    torch.testing.assert_close(torch.cat(stepped, 1), logits, atol=1e-4, rtol=1e-4)
    prompt = ids[:, :16]
    out = generate(model, prompt, max_new_tokens=8, temperature=0)
    ref = prompt
    with torch.no_grad():
        for _ in range(8):
            ref = torch.cat([ref, model(ref)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_cuda_graph_step_replays_at_every_position(backend) -> None:
    """Capture model.step once on static caches, replay it for 12 tokens: the parallel forward's logits."""
    model = _transformerpp(backend)
    batch, prompt_len, new = 2, 20, 12
    ids = torch.randint(0, VOCAB, (batch, prompt_len + new), device="cuda")
    with torch.inference_mode():
        logits = model(ids)
        caches = _static_caches(model, batch, max_seqlen=prompt_len + new)
        model(ids[:, :prompt_len], caches=caches)
        token = ids[:, prompt_len].clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up (compiles the kernels), then rewind the counters
            for _ in range(2):
                model.step(token, caches)
        torch.cuda.current_stream().wait_stream(stream)
        for cache in caches:
            cache.seqlen.fill_(prompt_len)
            cache.host_seqlen = prompt_len
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model.step(token, caches)
        assert all(cache.host_seqlen is None for cache in caches)  # replays advance the device counter
        stepped = []
        for t in range(prompt_len, prompt_len + new):
            token.copy_(ids[:, t])
            graph.replay()
            stepped.append(out.clone())
        torch.cuda.synchronize()
    torch.testing.assert_close(torch.stack(stepped, 1), logits[:, prompt_len:], atol=1e-4, rtol=1e-4)
    assert all(int(cache.seqlen) == prompt_len + new for cache in caches)


def test_bf16_model_decodes_close_to_its_forward() -> None:
    model = _transformerpp("triton", torch.bfloat16)
    ids = torch.randint(0, VOCAB, (2, 64), device="cuda")
    with torch.no_grad():
        logits = model(ids).float()
        caches = _static_caches(model, 2, max_seqlen=64)
        stepped = [model(ids[:, :48], caches=caches).float()]
        stepped += [model.step(ids[:, t], caches)[:, None].float() for t in range(48, 64)]
    torch.testing.assert_close(torch.cat(stepped, 1), logits, atol=0.1, rtol=0.05)


def test_inplace_rotary_forward_equals_pytorch_rotary() -> None:
    """A no-grad forward rotates in place with the Triton kernel; same logits as the PyTorch rotation."""
    ids = torch.randint(0, VOCAB, (2, 2048), device="cuda")
    with torch.no_grad():
        triton_logits = _transformerpp("triton")(ids)
        torch_logits = _transformerpp("torch")(ids)
    torch.testing.assert_close(triton_logits, torch_logits, atol=1e-4, rtol=1e-4)


def test_model_built_under_a_cuda_device_context_keeps_its_rotary_tables_there() -> None:
    """Built inside ``with torch.device("cuda")`` and cast to bf16 (as the generation benchmark does):
    the fp32 rotary tables must live on the GPU, where the Triton kernels read them."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LMHeadModel(
            VOCAB,
            d_model=256,
            n_layer=2,
            mixer=partial(MHA, n_heads=4, decode_backend="triton"),
            mlp=partial(GatedMLP),
        )
    model = model.to(torch.bfloat16).eval()
    rotary = model.backbone.layers[0].mixer.rotary
    assert rotary.inv_freq.is_cuda and rotary.inv_freq.dtype == torch.float32
    prompt = torch.randint(0, VOCAB, (2, 16), device="cuda")
    assert generate(model, prompt, max_new_tokens=4, temperature=0).shape == (2, 20)
