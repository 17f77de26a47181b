"""Autoregressive sampling with recurrent state: prefill once, then one ``step`` per new token."""

from __future__ import annotations

import logging
import time

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
    max_seconds: float | None = None,
    return_logprobs: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Continue each prompt in input_ids (batch, prompt_len) by up to ``max_new_tokens`` tokens.

    The model must follow the recurrent protocol of :class:`mambabench.models.lm.LMHeadModel`
    (``allocate_cache``, ``forward(..., caches)``, ``step``). Returns (batch, prompt_len + new).
    Sequences that emit ``eos_token_id`` keep emitting it. ``progress`` shows a progress bar (long audio).
    ``max_seconds`` stops early (shorter continuations, with a warning) once that much time has passed.
    ``return_logprobs`` also returns each continuation's exact log-likelihood (batch,) in nats under the
    model's own distribution (before temperature / top-k / top-p), as SaShiMi's generation ranks samples.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be (batch, prompt_len >= 1), got shape {tuple(input_ids.shape)}")
    caches = model.allocate_cache(input_ids.shape[0])
    logits = model(input_ids, caches=caches)[:, -1]
    out = [input_ids]
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    steps = range(max_new_tokens)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="generating", unit="token", unit_scale=True)
    logprobs = torch.zeros(input_ids.shape[0], device=input_ids.device)
    started = time.perf_counter()
    for i in steps:
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            log.warning(f"generation stopped after {max_seconds:g} s: {i} of {max_new_tokens} new tokens")
            break
        token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_token_id is not None:
            token = torch.where(finished, torch.full_like(token, eos_token_id), token)
            finished |= token == eos_token_id
        out.append(token[:, None])
        if return_logprobs:
            logprobs += logits.float().log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
        if i + 1 < max_new_tokens:
            logits = model.step(token, caches)
    tokens = torch.cat(out, dim=1)
    return (tokens, logprobs) if return_logprobs else tokens


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
