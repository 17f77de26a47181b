"""Released-format Mamba checkpoints (config.json + pytorch_model.bin) load one-to-one into our LM."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from mambabench.models.pretrained import (
    WEIGHTS_FILE,
    CheckpointFormatError,
    load_pretrained,
    network_from_released_config,
    released_to_ours,
    save_released,
)

CONFIG = {
    "d_model": 16,
    "n_layer": 2,
    "vocab_size": 50,
    "ssm_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": False,
    "pad_vocab_size_multiple": 8,
}


@pytest.fixture()
def released(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = network_from_released_config(CONFIG)
    return save_released(model, tmp_path / "mamba-tiny", CONFIG), model


def test_round_trip_gives_the_same_logits(released) -> None:
    folder, model = released
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    assert "backbone.layers.1.mixer.A_log" in state and "lm_head.weight" in state
    loaded = load_pretrained(str(folder), vocab_size=50)
    ids = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    assert loaded.lm_head.weight is loaded.backbone.embedding.weight


def test_missing_and_unexpected_keys_are_listed(released) -> None:
    folder, _ = released
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    del state["backbone.layers.0.mixer.D"]
    state["backbone.layers.0.mixer.extra"] = torch.zeros(1)
    torch.save(state, folder / WEIGHTS_FILE)
    with pytest.raises(
        CheckpointFormatError,
        match=r"1 missing key\(s\) \['backbone.layers.0.mixer.D'\], "
        r"1 unexpected key\(s\) \['backbone.layers.0.mixer.extra'\]",
    ):
        load_pretrained(str(folder))


def test_vocabulary_and_format_errors(released, tmp_path: Path, monkeypatch) -> None:
    folder, _ = released
    with pytest.raises(CheckpointFormatError, match="data.tokenizer=gpt-neox"):
        load_pretrained(str(folder), vocab_size=50277)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointFormatError, match="lacks config.json, pytorch_model.bin"):
        load_pretrained(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointFormatError, match="Offline, download the folder elsewhere|huggingface_hub"):
        load_pretrained("state-spaces/mamba-130m-not-cached")


def test_name_map_is_one_to_one() -> None:
    assert (
        released_to_ours("backbone.layers.23.mixer.dt_proj.bias") == "backbone.layers.23.mixer.dt_proj.bias"
    )
    with pytest.raises(CheckpointFormatError, match="unexpected key"):
        released_to_ours("backbone.layers.0.mixer.norm.weight")


def test_hub_name_is_downloaded_with_huggingface_hub(released, monkeypatch) -> None:
    """Online, ``model.pretrained=<owner/name>`` fetches the two released files with huggingface_hub's
    ``snapshot_download`` (stood in for here by a local folder) and loads them like a local folder."""
    folder, model = released
    calls = []

    def snapshot_download(repo_id: str, allow_patterns: list[str]) -> str:
        calls.append((repo_id, allow_patterns))
        return str(folder)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download)
    )
    loaded = load_pretrained("state-spaces/mamba-tiny", vocab_size=50)
    assert calls == [("state-spaces/mamba-tiny", ["config.json", WEIGHTS_FILE])]
    ids = torch.randint(0, 50, (1, 5))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
