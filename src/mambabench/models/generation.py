"""Autoregressive sampling with recurrent state: prefill once, then one ``step`` per new token.

The cache protocol every generating model follows:

- ``model.allocate_cache(batch_size, dtype=None, max_seqlen=None)`` returns one cache per layer (a
  dataclass of tensors). The tensors are allocated once and ``step`` updates them in place: no
  ``torch.cat``, no Python numbers that change per token. A cache that needs a position (learned
  positions, rotary angles, a KV cache's fill level) keeps it in a device tensor. Caches whose size
  grows with the sequence (KV caches, long-convolution histories) are allocated for ``max_seqlen``
  tokens; the others ignore it. ``LMHeadModel.allocate_cache`` passes ``max_seqlen`` to each mixer as
  ``mixer.allocate_cache(batch_size, dtype, device, max_seqlen=...)``.
- ``model(input_ids, caches=caches)`` is the prefill: the parallel forward (the scan returns its last
  state, the short convolution keeps its last ``d_conv`` inputs) that fills the caches.
- ``model.step(token, caches)`` advances every cache by one token: token (batch,) -> logits (batch, vocab).

On CUDA, :func:`generate` captures ``step`` in one CUDA graph per (batch size, max_seqlen, dtype) and
replays it per token (the decode step of a 1B model is about 300 kernel launches, so without a graph
the GPU waits on Python). Before capture, ``step`` runs twice eagerly on a side stream (Triton compiles,
cuBLAS picks its kernels); if a cache changes shape, storage or a Python field during those steps it is
not graph-safe, and generation steps eagerly instead, with a logged note. The captured caches are kept
on the model (``model._decode_graph``) and reset to their allocation values before each prefill, so
later calls with the same shapes replay at once. Sampling runs outside the graph.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick one token per row from logits (batch, vocab): greedy when temperature == 0,
    else temperature-scaled sampling restricted to the top-k tokens and the top-p nucleus."""
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"bad sampling settings: temperature={temperature}, top_k={top_k}, top_p={top_p}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def allocate_cache(model: nn.Module, batch_size: int, dtype: torch.dtype | None, max_seqlen: int) -> Any:
    """``model.allocate_cache`` with ``max_seqlen`` when the model takes it (SaShiMi's state does not grow)."""
    if "max_seqlen" in inspect.signature(model.allocate_cache).parameters:
        return model.allocate_cache(batch_size, dtype, max_seqlen=max_seqlen)
    return model.allocate_cache(batch_size, dtype)


def _fields(cache: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf of a cache: dataclass fields, list/tuple/dict items, recursively."""
    if dataclasses.is_dataclass(cache) and not isinstance(cache, type):
        for f in dataclasses.fields(cache):
            yield from _fields(getattr(cache, f.name), f"{prefix}.{f.name}")
    elif isinstance(cache, (list, tuple)):
        for i, item in enumerate(cache):
            yield from _fields(item, f"{prefix}[{i}]")
    elif isinstance(cache, dict):
        for key, item in cache.items():
            yield from _fields(item, f"{prefix}[{key!r}]")
    else:
        yield prefix, cache


def _fingerprint(caches: Any) -> dict[str, Any]:
    """What must not change while a graph replays: each tensor's storage, shape and dtype, and the value
    of every other leaf (a Python int that counts tokens would be frozen into the graph)."""
    return {
        path: (value.data_ptr(), tuple(value.shape), value.dtype)
        if isinstance(value, Tensor)
        else repr(value)
        for path, value in _fields(caches)
    }


def _initial_values(
    caches: Any, copy_limit_bytes: int = 64 * 2**20
) -> list[tuple[Tensor, float | complex | Tensor]]:
    """For each cache tensor, how to reset it: the one value it was filled with at allocation (zeros,
    RWKV's -1e4 offset, ...), or a copy when it was not uniform. A non-uniform tensor larger than
    ``copy_limit_bytes`` (a KV buffer left uninitialised: only its filled part is ever read) is zeroed."""
    out: list[tuple[Tensor, float | complex | Tensor]] = []
    for _, value in _fields(caches):
        if not isinstance(value, Tensor) or value.numel() == 0:
            continue
        flat = torch.view_as_real(value) if value.is_complex() else value
        flat = flat.to(torch.uint8) if flat.dtype == torch.bool else flat
        if bool(flat.amin() == flat.amax()):
            out.append((value, value.reshape(-1)[0].item()))
        elif value.numel() * value.element_size() <= copy_limit_bytes:
            out.append((value, value.clone()))
        else:
            out.append((value, 0))
    return out


def host_side_cache_changes(model: nn.Module, caches: Any, token: Tensor, n_steps: int = 1) -> list[str]:
    """Run ``model.step`` ``n_steps`` times and name the cache fields it changed on the host (a tensor
    replaced or resized, a Python value changed): a CUDA graph would replay those frozen. Empty: every
    cache is updated in place on the device, the step can be captured."""
    before = _fingerprint(caches)
    for _ in range(n_steps):
        model.step(token, caches)
    after = _fingerprint(caches)
    return sorted(
        path.lstrip(".") for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


def reset_caches(initial: list[tuple[Tensor, float | complex | Tensor]]) -> None:
    """Put every cache tensor back to its allocation value (from :func:`_initial_values`), in place."""
    for tensor, value in initial:
        if isinstance(value, Tensor):
            tensor.copy_(value)
        else:
            tensor.fill_(value)


class DecodeGraph:
    """One captured decode step: static token input, static logits output, the caches it updates.

    Built by :func:`capture_decode_graph`; ``reset()`` restores the caches' allocation values (before a
    prefill), ``run(token)`` copies the token in, replays the graph and returns the logits buffer
    (overwritten by the next replay).
    """

    def __init__(
        self,
        key: tuple[Any, ...],
        caches: Any,
        initial: list[tuple[Tensor, float | complex | Tensor]],
        token: Tensor,
        logits: Tensor,
        graph: torch.cuda.CUDAGraph,
    ) -> None:
        self.key, self.caches, self._initial = key, caches, initial
        self._token, self._logits, self._graph = token, logits, graph

    def reset(self) -> None:
        reset_caches(self._initial)

    def run(self, token: Tensor) -> Tensor:
        self._token.copy_(token)
        self._graph.replay()
        return self._logits


def capture_decode_graph(
    model: nn.Module, batch_size: int, max_seqlen: int, dtype: torch.dtype | None = None, n_warmups: int = 2
) -> DecodeGraph | str:
    """Capture ``model.step`` for ``batch_size`` sequences of up to ``max_seqlen`` tokens in a CUDA graph.

    Returns the :class:`DecodeGraph`, or a sentence saying why the step cannot be captured (a cache that
    is not updated in place, a host synchronisation inside ``step``); the caller then steps eagerly.
    """
    device = next(model.parameters()).device
    caches = allocate_cache(model, batch_size, dtype, max_seqlen)
    initial = _initial_values(caches)
    token = torch.zeros(batch_size, dtype=torch.long, device=device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(side):  # compiles Triton kernels and settles cuBLAS outside the capture
            changed = host_side_cache_changes(model, caches, token, n_warmups)
        torch.cuda.current_stream(device).wait_stream(side)
    except Exception as e:  # noqa: BLE001 - any failure here means: step eagerly
        return f"the warm-up step failed ({type(e).__name__}: {e})"
    if changed:
        return f"step replaces or advances on the host the cache fields {', '.join(changed[:4])}"
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            logits = model.step(token, caches)
    except Exception as e:  # noqa: BLE001 - e.g. .item() inside step: not capturable
        torch.cuda.synchronize(device)
        return f"capturing step failed ({type(e).__name__}: {e})"
    return DecodeGraph((batch_size, max_seqlen, dtype, device), caches, initial, token, logits, graph)


def _decode_graph(
    model: nn.Module, batch_size: int, max_seqlen: int, dtype: torch.dtype | None
) -> DecodeGraph | None:
    """The model's captured step for these shapes (capturing it on first use; one kept per model)."""
    device = next(model.parameters()).device
    key = (batch_size, max_seqlen, dtype, device)
    held = getattr(model, "_decode_graph", None)
    if isinstance(held, DecodeGraph) and held.key == key:
        return held
    if isinstance(held, str) and getattr(model, "_decode_graph_key", None) == key:
        return None  # already known not to capture; noted once
    model._decode_graph = None  # free the previous graph's caches before allocating new ones
    torch.cuda.empty_cache()
    captured = capture_decode_graph(model, batch_size, max_seqlen, dtype)
    model._decode_graph, model._decode_graph_key = captured, key
    if isinstance(captured, str):
        log.warning("decoding %s eagerly, without a CUDA graph: %s", type(model).__name__, captured)
        return None
    return captured


def _prefill_logits(model: nn.Module, input_ids: Tensor, caches: Any) -> Tensor:
    """Run the prompt (batch, prompt_len) through the parallel forward, filling ``caches``; returns the
    logits of the last position (batch, vocab) without building the (batch, prompt_len, vocab) tensor."""
    logits_of = getattr(model, "_logits", None)
    if logits_of is not None and "return_hidden" in inspect.signature(model.forward).parameters:
        return logits_of(model(input_ids, caches=caches, return_hidden=True)[:, -1])
    return model(input_ids, caches=caches)[:, -1]


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    cuda_graph: bool | None = None,
    dtype: torch.dtype | None = None,
    max_seconds: float | None = None,
    return_logprobs: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Continue each prompt in input_ids (batch, prompt_len) by up to ``max_new_tokens`` tokens.

    The model must follow the cache protocol of this module (see the module docstring). Returns
    (batch, prompt_len + max_new_tokens). Sequences that emit ``eos_token_id`` keep emitting it.
    ``progress`` shows a progress bar (long audio). ``cuda_graph``: replay the decode step as a CUDA
    graph (default: on for CUDA models; always off on CPU). ``dtype``: the caches' dtype (default: the
    parameters'). ``max_seconds`` stops early (shorter continuations, with a warning) once that much
    time has passed. ``return_logprobs`` also returns each continuation's exact log-likelihood (batch,)
    in nats under the model's own distribution (before temperature / top-k / top-p), as SaShiMi's
    generation ranks samples.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be (batch, prompt_len >= 1), got shape {tuple(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    batch, prompt_len = input_ids.shape
    on_cuda = next(model.parameters()).is_cuda
    use_graph = on_cuda if cuda_graph is None else (cuda_graph and on_cuda)
    if cuda_graph and not on_cuda:
        log.info("cuda_graph=True ignored: the model is on the CPU")
    max_seqlen = prompt_len + max_new_tokens
    graph = _decode_graph(model, batch, max_seqlen, dtype) if use_graph else None
    if graph is not None:
        graph.reset()
        caches = graph.caches
        step: Callable[[Tensor], Tensor] = graph.run
    else:
        caches = allocate_cache(model, batch, dtype, max_seqlen)

        def step(token: Tensor) -> Tensor:
            return model.step(token, caches)

    out = torch.empty(batch, max_seqlen, dtype=input_ids.dtype, device=input_ids.device)
    out[:, :prompt_len] = input_ids
    logprobs = torch.zeros(batch, device=input_ids.device)
    if max_new_tokens == 0:
        return (out, logprobs) if return_logprobs else out
    logits = _prefill_logits(model, input_ids, caches)
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    steps: Any = range(max_new_tokens)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="generating", unit="token", unit_scale=True)
    started, n_new = time.perf_counter(), max_new_tokens
    for i in steps:
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            log.warning(f"generation stopped after {max_seconds:g} s: {i} of {max_new_tokens} new tokens")
            n_new = i
            break
        token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_token_id is not None:
            token = torch.where(finished, torch.full_like(token, eos_token_id), token)
            finished |= token == eos_token_id
        out[:, prompt_len + i] = token
        if return_logprobs:
            logprobs += logits.float().log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
        if i + 1 < max_new_tokens:
            logits = step(token)
    out = out[:, : prompt_len + n_new]
    return (out, logprobs) if return_logprobs else out


def keep_by_likelihood(logprobs: Tensor, reject_lowest: float = 0.0, reject_highest: float = 0.0) -> Tensor:
    """Indices (ascending likelihood) of the samples left after rejecting the ``reject_lowest`` fraction
    with the lowest and the ``reject_highest`` fraction with the highest log-likelihood ``logprobs``
    (n,). SaShiMi (arXiv:2202.09729, App. C.3) drops the bottom 40 % and top 5 % of its SC09 samples:
    the least likely ones tend to be noise, the most likely ones silence or a stuck tone."""
    if not (0 <= reject_lowest and 0 <= reject_highest and reject_lowest + reject_highest < 1):
        raise ValueError(
            f"reject_lowest={reject_lowest} and reject_highest={reject_highest} must be >= 0 and leave "
            f"some samples (their sum < 1)"
        )
    n = logprobs.shape[0]
    order = torch.argsort(logprobs.float().cpu(), stable=True)
    low, high = int(n * reject_lowest), int(n * reject_highest)
    return order[low : n - high]
