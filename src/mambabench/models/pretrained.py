"""Released Mamba checkpoints (state-spaces/mamba-130m ... mamba-2.8b) in and out of our LM.

The published format is a folder with ``config.json`` (``d_model``, ``n_layer``, ``vocab_size``,
``ssm_cfg``, ``rms_norm``, ``residual_in_fp32``, ``fused_add_norm``, ``pad_vocab_size_multiple``) and
``pytorch_model.bin`` (the state dict of mamba-ssm's ``MambaLMHeadModel``). :data:`NAME_MAP` writes the
parameter names of that layout against ours once; loading fails on any missing or unexpected key,
listing them, and on any shape mismatch.

``python src/train.py model=pretrained model.pretrained=<dir>`` (or ``src/eval.py``) builds the network
from such a folder; a Hugging Face Hub name (``state-spaces/mamba-130m``) works when the machine is
online and ``huggingface_hub`` is installed.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mambabench.models.lm import LMHeadModel
from mambabench.models.mixers.mamba import Mamba
from mambabench.models.norms import RMSNorm
from mambabench.utils.errors import InputError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "pytorch_model.bin"
FORMAT_HELP = (
    f"a released-format checkpoint is a folder with {CONFIG_FILE} (d_model, n_layer, vocab_size, "
    f"ssm_cfg, rms_norm, residual_in_fp32, pad_vocab_size_multiple) and {WEIGHTS_FILE} (the state "
    f"dict of mamba-ssm's MambaLMHeadModel), as in huggingface.co/state-spaces/mamba-130m"
)

#: (released name pattern, our name pattern): one row per parameter of the state-spaces/mamba-* layout
NAME_MAP: tuple[tuple[str, str], ...] = (
    (r"backbone\.embedding\.weight", "backbone.embedding.weight"),
    (r"backbone\.layers\.(\d+)\.norm\.weight", r"backbone.layers.\1.norm.weight"),
    (r"backbone\.layers\.(\d+)\.norm\.bias", r"backbone.layers.\1.norm.bias"),
    (r"backbone\.layers\.(\d+)\.mixer\.in_proj\.weight", r"backbone.layers.\1.mixer.in_proj.weight"),
    (r"backbone\.layers\.(\d+)\.mixer\.in_proj\.bias", r"backbone.layers.\1.mixer.in_proj.bias"),
    (r"backbone\.layers\.(\d+)\.mixer\.conv1d\.weight", r"backbone.layers.\1.mixer.conv1d.weight"),
    (r"backbone\.layers\.(\d+)\.mixer\.conv1d\.bias", r"backbone.layers.\1.mixer.conv1d.bias"),
    (r"backbone\.layers\.(\d+)\.mixer\.x_proj\.weight", r"backbone.layers.\1.mixer.x_proj.weight"),
    (r"backbone\.layers\.(\d+)\.mixer\.dt_proj\.weight", r"backbone.layers.\1.mixer.dt_proj.weight"),
    (r"backbone\.layers\.(\d+)\.mixer\.dt_proj\.bias", r"backbone.layers.\1.mixer.dt_proj.bias"),
    (r"backbone\.layers\.(\d+)\.mixer\.A_log", r"backbone.layers.\1.mixer.A_log"),
    (r"backbone\.layers\.(\d+)\.mixer\.D", r"backbone.layers.\1.mixer.D"),
    (r"backbone\.layers\.(\d+)\.mixer\.out_proj\.weight", r"backbone.layers.\1.mixer.out_proj.weight"),
    (r"backbone\.layers\.(\d+)\.mixer\.out_proj\.bias", r"backbone.layers.\1.mixer.out_proj.bias"),
    (r"backbone\.norm_f\.weight", "backbone.norm_f.weight"),
    (r"backbone\.norm_f\.bias", "backbone.norm_f.bias"),
    (r"lm_head\.weight", "lm_head.weight"),
)
_COMPILED = tuple((re.compile(f"^{src}$"), dst) for src, dst in NAME_MAP)
_INVERSE = tuple(
    (re.compile("^" + re.escape(dst).replace(re.escape(r"\1"), r"(\d+)") + "$"), src) for src, dst in NAME_MAP
)


class CheckpointFormatError(InputError):
    """A checkpoint folder or state dict that does not match the released layout; the message lists why."""


def released_to_ours(name: str) -> str:
    """Our parameter name for a released one (:data:`NAME_MAP`); unknown names raise."""
    for pattern, dst in _COMPILED:
        if pattern.match(name):
            return pattern.sub(dst, name)
    raise CheckpointFormatError(f"unexpected key '{name}' in a released Mamba checkpoint")


def ours_to_released(name: str) -> str:
    """Inverse of :func:`released_to_ours` (the map is one-to-one)."""
    for pattern, src in _INVERSE:
        match = pattern.match(name)
        if match:
            return src.replace(r"(\d+)", match.group(1) if match.groups() else "").replace("\\.", ".")
    raise CheckpointFormatError(f"our parameter '{name}' has no released name")


def resolve_checkpoint_dir(name_or_dir: str | Path) -> Path:
    """A local folder as is; otherwise a Hub name downloaded with huggingface_hub (online only)."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (path / f).exists()]
        if missing:
            raise CheckpointFormatError(f"'{path}' lacks {', '.join(missing)}; {FORMAT_HELP}")
        return path
    if path.exists() or str(name_or_dir).count("/") != 1:
        raise CheckpointFormatError(
            f"'{name_or_dir}' is neither a checkpoint folder nor a Hub name (owner/model); {FORMAT_HELP}"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointFormatError(
            f"'{name_or_dir}' is not a local folder, and downloading it needs "
            f"huggingface_hub (pip install huggingface_hub); {FORMAT_HELP}"
        ) from None
    try:
        return Path(snapshot_download(str(name_or_dir), allow_patterns=[CONFIG_FILE, WEIGHTS_FILE]))
    except Exception as err:  # offline, unknown repo, no access: one clear message
        raise CheckpointFormatError(
            f"could not fetch '{name_or_dir}' from the Hugging Face Hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}). Offline, download the folder elsewhere "
            f"and pass its path; {FORMAT_HELP}"
        ) from None


def read_released_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointFormatError(f"'{path}' is not valid JSON ({err}); {FORMAT_HELP}") from None
    if not isinstance(config, dict):
        raise CheckpointFormatError(
            f"'{path}' holds a {type(config).__name__}, not a JSON object; {FORMAT_HELP}"
        )
    missing = [k for k in ("d_model", "n_layer", "vocab_size") if k not in config]
    if missing:
        raise CheckpointFormatError(
            f"'{Path(folder) / CONFIG_FILE}' lacks {', '.join(missing)}; {FORMAT_HELP}"
        )
    return config


def network_from_released_config(config: dict[str, Any], fused_add_norm: bool | None = None) -> LMHeadModel:
    """Our :class:`LMHeadModel` with the shape of a released ``config.json`` (random weights)."""
    ssm_cfg = dict(config.get("ssm_cfg") or {})
    norm = partial(RMSNorm, eps=1e-5) if config.get("rms_norm", True) else partial(nn.LayerNorm, eps=1e-5)
    return LMHeadModel(
        vocab_size=int(config["vocab_size"]),
        d_model=int(config["d_model"]),
        n_layer=int(config["n_layer"]),
        mixer=partial(Mamba, **ssm_cfg),
        mlp=None,
        norm=norm,
        residual_in_fp32=bool(config.get("residual_in_fp32", True)),
        tie_embeddings=bool(config.get("tie_embeddings", True)),
        pad_vocab_size_multiple=int(config.get("pad_vocab_size_multiple", 8)),
        fused_add_norm=bool(config.get("fused_add_norm", False))
        if fused_add_norm is None
        else fused_add_norm,
    )


def load_released_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], where: str = "checkpoint"
) -> None:
    """Copy a released-layout state dict into ``model``: every key maps one-to-one, nothing missing."""
    ours = model.state_dict()
    mapped, unexpected = {}, []
    for name, tensor in state.items():
        try:
            mapped[released_to_ours(name)] = tensor
        except CheckpointFormatError:
            unexpected.append(name)
    tied = (
        getattr(model, "lm_head", None) is not None
        and model.lm_head.weight is model.backbone.embedding.weight
    )
    if tied and "lm_head.weight" not in mapped and "backbone.embedding.weight" in mapped:
        mapped["lm_head.weight"] = mapped["backbone.embedding.weight"]
    unexpected += [k for k in mapped if k not in ours]
    missing = [k for k in ours if k not in mapped]
    if missing or unexpected:
        raise CheckpointFormatError(
            f"{where} does not match the model: {len(missing)} missing key(s) {missing[:8]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:8]}; check config.json against the weights"
        )
    bad = [
        f"{k}: {tuple(mapped[k].shape)} vs ours {tuple(ours[k].shape)}"
        for k in ours
        if tuple(mapped[k].shape) != tuple(ours[k].shape)
    ]
    if bad:
        raise CheckpointFormatError(f"{where} has {len(bad)} shape mismatch(es): {bad[:4]}")
    model.load_state_dict(mapped, strict=True)


def _read_released_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``pytorch_model.bin``; a truncated or foreign file is named, not a traceback."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip, pickle and unpickler errors all mean the file cannot be used
        raise CheckpointFormatError(
            f"cannot read the weights '{path}' ({type(err).__name__}: {(str(err).splitlines() or ['no detail'])[0][:200]}); "
            f"it is truncated, corrupt or not a PyTorch state dict: download it again; {FORMAT_HELP}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointFormatError(
            f"'{path}' holds a {type(state).__name__}, not a state dict; {FORMAT_HELP}"
        )
    return state


def load_pretrained(
    pretrained: str, vocab_size: int | None = None, fused_add_norm: bool | None = None, **_: Any
) -> LMHeadModel:
    """``model=pretrained model.pretrained=<dir or Hub name>``: our LM with a released checkpoint's weights.

    ``vocab_size`` (from the data module) must not exceed the checkpoint's vocabulary: pair the released
    models with ``data.tokenizer=gpt-neox``."""
    folder = resolve_checkpoint_dir(pretrained)
    config = read_released_config(folder)
    if vocab_size is not None and int(vocab_size) > int(config["vocab_size"]):
        raise CheckpointFormatError(
            f"the data's vocabulary ({vocab_size}) is larger than the checkpoint's ({config['vocab_size']}) in "
            f"'{folder}'; released Mamba models use the GPT-NeoX tokenizer: set data.tokenizer=gpt-neox"
        )
    model = network_from_released_config(config, fused_add_norm)
    state = _read_released_weights(folder / WEIGHTS_FILE)
    load_released_state_dict(model, state, where=f"'{folder / WEIGHTS_FILE}'")
    return model


def save_released(model: LMHeadModel, folder: str | Path, config: dict[str, Any]) -> Path:
    """Write ``model`` in the released format (``config.json`` + ``pytorch_model.bin``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {ours_to_released(k): v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    return folder
