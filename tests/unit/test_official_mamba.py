"""Our LM against the official mamba-ssm ``MambaLMHeadModel`` on CPU: the official model's weights, saved
in the released format and loaded into ours, give the same logits and the same greedy generations.

mamba-ssm's CUDA extension and Triton layer norm cannot run on a CPU, so this test only: stubs the
``selective_scan_cuda`` import (and ``transformers`` when absent), runs the official reference scan
(``selective_scan_ref``, ``use_fast_path=False``) and the reference RMSNorm (``rms_norm_ref``). The
model code itself (blocks, mixer, projections, conv, discretisation) is mamba-ssm's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from mambabench.models.generation import generate
from mambabench.models.pretrained import load_pretrained

INSTALL = (
    "mamba-ssm not installed: MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE pip install --no-deps "
    "--no-build-isolation mamba-ssm einops"
)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None, reason=INSTALL)
CONFIG = {
    "d_model": 32,
    "n_layer": 2,
    "vocab_size": 50,
    "ssm_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": False,
    "pad_vocab_size_multiple": 8,
}


def _stub(monkeypatch: pytest.MonkeyPatch, name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture()
def official(monkeypatch: pytest.MonkeyPatch):
    """mamba-ssm's MambaLMHeadModel (random weights) on its pure-PyTorch reference path."""
    if "selective_scan_cuda" not in sys.modules:
        _stub(monkeypatch, "selective_scan_cuda")
    if importlib.util.find_spec("transformers") is None:
        _stub(monkeypatch, "transformers")
        _stub(monkeypatch, "transformers.generation", GenerateDecoderOnlyOutput=dict, TextStreamer=object)
        _stub(monkeypatch, "transformers.utils", WEIGHTS_NAME="pytorch_model.bin", CONFIG_NAME="config.json")
        _stub(monkeypatch, "transformers.utils.hub", cached_file=None)
    import mamba_ssm.modules.mamba_simple as mamba_simple
    import mamba_ssm.ops.triton.layer_norm as layer_norm
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref

    monkeypatch.setattr(mamba_simple, "selective_scan_fn", selective_scan_ref)
    monkeypatch.setattr(mamba_simple, "causal_conv1d_fn", None)
    monkeypatch.setattr(
        layer_norm.RMSNorm,
        "forward",
        lambda self, x, residual=None, prenorm=False, residual_in_fp32=False: layer_norm.rms_norm_ref(
            x, self.weight, self.bias, eps=self.eps
        ),
    )
    torch.manual_seed(0)
    ssm_cfg = {"layer": "Mamba1", "use_fast_path": False}
    return MambaLMHeadModel(MambaConfig(**{**CONFIG, "ssm_cfg": ssm_cfg})).eval()


def test_released_format_matches_official_logits_and_greedy_generation(official, tmp_path: Path) -> None:
    folder = tmp_path / "mamba-tiny"
    folder.mkdir()
    torch.save(official.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    ours = load_pretrained(str(folder)).eval()
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = official(ids).logits[..., :50]
        torch.testing.assert_close(ours(ids), theirs, rtol=1e-5, atol=1e-5)
        prompt = ids[:, :4]
        want = prompt
        for _ in range(8):  # the official model, greedy, re-reading the whole sequence each step
            next_id = official(want).logits[:, -1, :50].argmax(-1, keepdim=True)
            want = torch.cat([want, next_id], dim=1)
    got = generate(ours, prompt, max_new_tokens=8, temperature=0.0)  # ours: prefill + recurrent steps
    assert torch.equal(got, want)
