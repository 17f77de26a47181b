"""EleutherAI lm-evaluation-harness adapter (``pip install -e ".[eval]"``): zero-shot tasks for our LMs.

:class:`HarnessLM` implements the harness's three request types for any network with our LM protocol
(:class:`mambabench.models.lm.LMHeadModel`):

* ``loglikelihood(context, continuation)``: one batched forward pass over ``context + continuation``
  (right-padded, longest first), summing the continuation's log-probabilities and checking whether it
  is the greedy continuation;
* ``loglikelihood_rolling(text)``: the whole document's log-likelihood over disjoint windows of
  ``max_length`` tokens, the first predicted from EOS;
* ``generate_until(context, until, max_gen_toks)``: greedy decoding with the recurrent state (prefill
  once, then one ``step`` per token; :func:`mambabench.models.generation.generate`), cut at the first
  stop string.

:func:`run_zeroshot` evaluates tasks and returns the metrics the paper reports (Table 3: accuracy for
LAMBADA, PIQA, ARC-easy, WinoGrande; length-normalised accuracy for HellaSwag, ARC-challenge;
LAMBADA perplexity).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambabench.data.tokenizers import TextTokenizer
from mambabench.models.generation import generate
from mambabench.utils.errors import MissingPackageError

try:
    from lm_eval.api import model as _harness_model

    _HarnessBase = _harness_model.LM
except ImportError:  # the adapter's logic still works (and is tested) without the harness
    _HarnessBase = object

EVAL_INSTALL = 'pip install -e ".[eval]"  (lm-evaluation-harness)'
#: Table 3's metric per task (mamba-paper.md §3.2)
PAPER_METRICS = {
    "lambada_openai": ("acc", "perplexity"),
    "hellaswag": ("acc_norm",),
    "piqa": ("acc",),
    "arc_easy": ("acc",),
    "arc_challenge": ("acc_norm",),
    "winogrande": ("acc",),
}


def _args(request: Any) -> tuple:
    return tuple(request.args) if hasattr(request, "args") else tuple(request)


class HarnessLM(_HarnessBase):
    """lm-evaluation-harness model over our network + text tokenizer.

    Args:
        network: an LM taking ``input_ids`` (batch, seqlen) -> logits (batch, seqlen, vocab).
        tokenizer: a :mod:`mambabench.data.tokenizers` text tokenizer (GPT-NeoX for released models).
        batch_size: sequences per forward pass.
        max_length: longest context fed to the model (2048 as the paper's evaluation).
        device: where the network runs.
    """

    def __init__(
        self,
        network: nn.Module,
        tokenizer: TextTokenizer,
        batch_size: int = 16,
        max_length: int = 2048,
        device: str | torch.device | None = None,
    ) -> None:
        if _HarnessBase is not object:
            super().__init__()
        self.network = network.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self._device = torch.device(device) if device else next(network.parameters()).device
        self.network.to(self._device)

    # -------------------------------------------------------------------------------- scoring
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:  # the harness's convention: trailing spaces belong to the continuation
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        ctx = self.tokenizer.encode(context) if context else []
        if whole[: len(ctx)] != ctx:  # BPE merged across the boundary: encode the parts separately
            return ctx or [self.tokenizer.eos_id], self.tokenizer.encode(continuation)
        return ctx or [self.tokenizer.eos_id], whole[len(ctx) :]

    @torch.inference_mode()
    def score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """[(context ids, continuation ids)] -> [(sum of continuation log-probs, continuation is greedy)]."""
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            rows = [(pairs[i][0] + pairs[i][1])[-(self.max_length + 1) :] for i in chunk]
            width = max(len(r) - 1 for r in rows)
            inputs = torch.zeros(len(rows), width, dtype=torch.long)
            for j, row in enumerate(rows):
                inputs[j, : len(row) - 1] = torch.tensor(row[:-1])
            logprobs = F.log_softmax(self.network(inputs.to(self._device)).float(), dim=-1).cpu()
            for j, i in enumerate(chunk):
                cont = pairs[i][1]
                n_in = len(rows[j]) - 1
                positions = torch.arange(n_in - len(cont), n_in)
                target = torch.tensor(cont)
                picked = logprobs[j, positions, target]
                greedy = bool((logprobs[j, positions].argmax(-1) == target).all())
                results[i] = (float(picked.sum()), greedy)
        return results  # type: ignore[return-value]

    def loglikelihood(self, requests: Iterable[Any]) -> list[tuple[float, bool]]:
        return self.score([self._encode_pair(*_args(r)[:2]) for r in requests])

    def loglikelihood_rolling(self, requests: Iterable[Any]) -> list[float]:
        out = []
        for request in requests:
            tokens = [self.tokenizer.eos_id, *self.tokenizer.encode(_args(request)[0])]
            # disjoint windows: each predicts up to max_length tokens from the token before it on
            windows = [
                (tokens[s : s + 1], tokens[s + 1 : s + 1 + self.max_length])
                for s in range(0, len(tokens) - 1, self.max_length)
            ]
            out.append(sum(ll for ll, _ in self.score(windows)))
        return out

    @torch.inference_mode()
    def generate_until(self, requests: Iterable[Any]) -> list[str]:
        out = []
        for request in requests:
            context, kwargs = _args(request)[:2]
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.get("max_gen_toks", 256))
            ids = ([self.tokenizer.eos_id] + self.tokenizer.encode(context))[-self.max_length :]
            tokens = generate(
                self.network,
                torch.tensor([ids], device=self._device),
                max_new,
                temperature=0.0,
                eos_token_id=self.tokenizer.eos_id,
            )[0, len(ids) :].tolist()
            if self.tokenizer.eos_id in tokens:
                tokens = tokens[: tokens.index(self.tokenizer.eos_id)]
            text = self.tokenizer.decode(tokens)
            for stop in until:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            out.append(text)
        return out


def run_zeroshot(
    network: nn.Module,
    tokenizer: TextTokenizer,
    tasks: list[str],
    batch_size: int = 16,
    max_length: int = 2048,
    limit: int | None = None,
    include_path: str | None = None,
    device: str | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate ``tasks`` with lm-evaluation-harness; returns {task: {metric: value}}."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MissingPackageError(
            f"zero-shot evaluation needs lm-evaluation-harness: {EVAL_INSTALL}"
        ) from None
    model = HarnessLM(network, tokenizer, batch_size, max_length, device)
    results = lm_eval.simple_evaluate(
        model=model,
        tasks=list(tasks),
        limit=limit,
        num_fewshot=0,
        task_manager=TaskManager(include_path=include_path),
    )
    out = {}
    for task, metrics in results["results"].items():
        out[task] = {
            k.split(",")[0]: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and "stderr" not in k
        }
    return out
