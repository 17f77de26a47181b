"""Our LM against the official mamba-ssm ``MambaLMHeadModel`` on CPU: the official model's weights, saved
in the released format and loaded into ours, give the same logits and the same greedy generations.

mamba-ssm's CUDA extension and Triton kernels cannot run on a CPU, so the official model runs on
mamba-ssm's own pure-PyTorch reference path (:func:`mambabench.models.official_mamba.official_mamba`);
scripts/official_logits_gpu.py makes the same comparison on a GPU against its CUDA kernels.
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
from mambabench.models.official_mamba import INSTALL_HINT, official_mamba
from mambabench.models.pretrained import load_pretrained

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None, reason=INSTALL_HINT)
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


@pytest.fixture()
def official():
    """mamba-ssm's MambaLMHeadModel (random weights) on its pure-PyTorch reference path."""
    with official_mamba(reference=True) as build:
        torch.manual_seed(0)
        yield build(CONFIG)


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
        # the official model's own decoding (prefill + its recurrent step), greedy
        decoded = official.generate(prompt, max_length=12, top_k=1, vocab_size=50)
    got = generate(ours, prompt, max_new_tokens=8, temperature=0.0)  # ours: prefill + recurrent steps
    assert torch.equal(got, want)
    assert torch.equal(decoded, want)


def test_mamba_ssm_imports_with_a_transformers_that_lacks_its_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transformers release without the names mamba-ssm imports (transformers 5 dropped some) gets
    stand-ins, only inside the context."""
    for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh against the bare transformers below
    for name in ("transformers", "transformers.generation", "transformers.utils", "transformers.utils.hub"):
        module = types.ModuleType(name)
        module.__path__ = []
        monkeypatch.setitem(sys.modules, name, module)
    with official_mamba(reference=True) as build:
        model = build(CONFIG)
        out = model.generate(
            torch.zeros(1, 3, dtype=torch.long), max_length=5, top_k=1, return_dict_in_generate=True
        )
        assert out.sequences.shape == (1, 5)
    assert not hasattr(sys.modules["transformers.generation"], "GenerateDecoderOnlyOutput")
