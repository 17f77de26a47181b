"""mamba-ssm's ``MambaLMHeadModel`` (https://github.com/state-spaces/mamba), built as the reference that
our LM is checked against: released-format checkpoints must give the same logits and generations.

:func:`official_mamba` is a context manager that yields a builder ``config dict -> MambaLMHeadModel``.
Inside it, mamba-ssm imports on any machine:

- **transformers / huggingface_hub.** mamba-ssm 2.3.x imports ``GenerateDecoderOnlyOutput`` and
  ``TextStreamer`` (``transformers.generation``), ``WEIGHTS_NAME``, ``CONFIG_NAME`` and ``cached_file``
  (``transformers.utils``) and ``PyTorchModelHubMixin`` (``huggingface_hub``). Any of these that cannot
  be imported (package absent, or a transformers release that dropped or broke the name) is supplied by
  a small stand-in here, only for the lifetime of the context. None of them is on the path compared:
  they type decode outputs and serve Hub downloads.
- **reference=True (CPU).** mamba-ssm's CUDA extension and Triton kernels cannot run on a CPU, so the
  ``selective_scan_cuda`` import is stubbed when missing and the model runs mamba-ssm's own pure-PyTorch
  reference path: ``selective_scan_ref`` for the scan, ``rms_norm_ref`` for RMSNorm, the unfused mixer
  (``use_fast_path=False``), the unfused add + norm and the PyTorch recurrent step. The model code itself
  (blocks, mixer, projections, conv, discretisation, decoding) is mamba-ssm's.
- **reference=False (GPU).** mamba-ssm as installed, with its CUDA kernels (scripts/install_official.sh).

Everything patched is restored on exit; models built inside must also be run inside.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import torch
from torch import nn

from mambabench.models.pretrained import CONFIG_FILE, WEIGHTS_FILE

INSTALL_HINT = (
    "mamba-ssm is not installed. With its CUDA kernels: bash scripts/install_official.sh; for the CPU "
    "reference path only: MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE pip install --no-deps "
    "--no-build-isolation mamba-ssm einops"
)


@dataclasses.dataclass
class GenerateDecoderOnlyOutput:
    """Stand-in for transformers' decode output: mamba-ssm's ``decode`` fills these two fields."""

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None


class TextStreamer:
    """Stand-in for transformers' ``TextStreamer`` (mamba-ssm only names it in a type hint)."""


class PyTorchModelHubMixin:
    """Stand-in for huggingface_hub's mixin (Hub upload/download methods of mamba-ssm's Mamba2)."""


def _no_hub_download(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError(
        "downloading from the Hub through mamba-ssm needs transformers: pip install transformers"
    )


#: module -> names mamba-ssm imports from it, with the stand-in used when the import fails
STAND_INS: dict[str, dict[str, Any]] = {
    "transformers.generation": {
        "GenerateDecoderOnlyOutput": GenerateDecoderOnlyOutput,
        "TextStreamer": TextStreamer,
    },
    "transformers.utils": {"WEIGHTS_NAME": WEIGHTS_FILE, "CONFIG_NAME": CONFIG_FILE},
    "transformers.utils.hub": {"cached_file": _no_hub_download},
    "huggingface_hub": {"PyTorchModelHubMixin": PyTorchModelHubMixin},
}


def _import_or_none(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # absent, or present but failing to import against this torch
        return None


def _put_module(stack: ExitStack, name: str, module: types.ModuleType) -> None:
    """Put ``module`` in ``sys.modules`` under ``name`` until ``stack`` closes (other modules untouched)."""
    previous = sys.modules.get(name)
    sys.modules[name] = module

    def restore() -> None:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous

    stack.callback(restore)


def _supply_missing_names(stack: ExitStack) -> list[str]:
    """Give every name of :data:`STAND_INS` that does not import a stand-in; returns what was supplied."""
    supplied = []
    for module_name, names in STAND_INS.items():
        module = _import_or_none(module_name)
        if module is None:
            parts = module_name.split(".")
            for depth in range(1, len(parts) + 1):  # a stub for the module and each missing parent package
                name = ".".join(parts[:depth])
                if _import_or_none(name) is None or name == module_name:
                    stub = types.ModuleType(name)
                    stub.__path__ = []  # a package, so that submodule stubs can sit below it
                    _put_module(stack, name, stub)
            module = sys.modules[module_name]
        for attr, value in names.items():
            try:
                getattr(module, attr)
            except Exception:  # missing, or a lazy attribute whose import fails
                stack.enter_context(mock.patch.object(module, attr, value, create=True))
                supplied.append(f"{module_name}.{attr}")
    return supplied


def _use_reference_path(stack: ExitStack) -> None:
    """Route mamba-ssm's model through its pure-PyTorch reference ops (runs on a CPU)."""
    if _import_or_none("selective_scan_cuda") is None:
        _put_module(stack, "selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    mamba_simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
    layer_norm = importlib.import_module("mamba_ssm.ops.triton.layer_norm")
    scan = importlib.import_module("mamba_ssm.ops.selective_scan_interface")

    def rms_norm(self, x, residual=None, prenorm=False, residual_in_fp32=False):  # noqa: ANN001, ANN202
        return layer_norm.rms_norm_ref(x, self.weight, self.bias, eps=self.eps)

    for name, value in (
        ("selective_scan_fn", scan.selective_scan_ref),
        ("causal_conv1d_fn", None),
        ("causal_conv1d_update", None),
        ("selective_state_update", None),
    ):
        stack.enter_context(mock.patch.object(mamba_simple, name, value))
    stack.enter_context(mock.patch.object(layer_norm.RMSNorm, "forward", rms_norm))


@contextmanager
def official_mamba(reference: bool = False) -> Iterator[Callable[..., nn.Module]]:
    """Yield ``build(config, device=None, dtype=None)``: mamba-ssm's ``MambaLMHeadModel`` for a released
    ``config.json`` dict (random weights, eval mode). ``reference`` runs it on mamba-ssm's pure-PyTorch
    path (CPU); otherwise on its CUDA kernels. Raises ImportError with the install command when
    mamba-ssm is missing."""
    if importlib.util.find_spec("mamba_ssm") is None:
        raise ImportError(INSTALL_HINT)
    with ExitStack() as stack:
        _supply_missing_names(stack)
        if reference:
            _use_reference_path(stack)
        try:
            from mamba_ssm.models.config_mamba import MambaConfig
            from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
        except ImportError as err:
            raise ImportError(
                f"mamba-ssm did not import ({err}); on a GPU build its kernels with "
                f"scripts/install_official.sh, on a CPU use the reference path"
            ) from err

        def build(
            config: dict[str, Any], device: torch.device | str | None = None, dtype: torch.dtype | None = None
        ) -> nn.Module:
            config = dict(config)
            if reference:  # the fused kernels are Triton/CUDA; their unfused equivalents are mamba-ssm's too
                config["ssm_cfg"] = {**(config.get("ssm_cfg") or {}), "use_fast_path": False}
                config["fused_add_norm"] = False
            config["ssm_cfg"] = {"layer": "Mamba1", **(config.get("ssm_cfg") or {})}
            known = {f.name for f in dataclasses.fields(MambaConfig)}
            model = MambaLMHeadModel(
                MambaConfig(**{k: v for k, v in config.items() if k in known}), device=device, dtype=dtype
            )
            return model.eval()

        yield build
