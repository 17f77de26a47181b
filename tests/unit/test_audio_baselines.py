"""WaveNet and SampleRNN (Table 4's baselines): shapes, causality, the recurrent step reproduces the
parallel forward, greedy generation is the argmax of the parallel forward, the state does not grow, and a
few optimizer steps lower the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambabench.models.generation import generate
from mambabench.models.samplernn import SampleRNN
from mambabench.models.wavenet import WaveNet

VOCAB = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _wavenet() -> WaveNet:
    torch.manual_seed(0)
    return WaveNet(VOCAB, d_model=8, n_layer=3, n_blocks=2, skip_channels=12, end_channels=10).eval()


def _samplernn() -> SampleRNN:
    torch.manual_seed(0)
    return SampleRNN(VOCAB, d_model=8, n_layer=2, frame_sizes=[4, 2], embed_dim=6).eval()


MODELS = {"wavenet": _wavenet, "samplernn": _samplernn}


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_causality(name: str) -> None:
    model = MODELS[name]()
    a = torch.randint(0, VOCAB, (2, 13))  # not a multiple of SampleRNN's top frame
    b = a.clone()
    b[:, 7:] = (b[:, 7:] + 1) % VOCAB
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
        hidden = model(a, return_hidden=True)
    assert out_a.shape == (2, 13, VOCAB) and hidden.shape == (2, 13, model.d_model)
    torch.testing.assert_close(out_a[:, :7], out_b[:, :7])
    assert not torch.allclose(out_a[:, 7:], out_b[:, 7:])


@pytest.mark.parametrize("name", MODELS)
def test_step_matches_forward(name: str) -> None:
    model = MODELS[name]()
    tokens = torch.randint(0, VOCAB, (3, 20))
    with torch.no_grad():
        full = model(tokens)
        stepped = model(tokens, caches=model.allocate_cache(3))
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_greedy_generation_is_the_argmax_of_the_parallel_forward(name: str) -> None:
    model = MODELS[name]()
    out = generate(model, torch.randint(0, VOCAB, (2, 3)), 17, temperature=0.0)
    with torch.no_grad():
        logits = model(out[:, :-1])
    assert torch.equal(logits[:, 2:].argmax(-1), out[:, 3:])


@pytest.mark.parametrize("name", MODELS)
def test_state_does_not_grow(name: str) -> None:
    model = MODELS[name]()
    caches = model.allocate_cache(1)
    with torch.no_grad():
        model.step(torch.tensor([1]), caches)
        sizes = [t.numel() for t in _tensors(caches)]
        for t in range(30):
            model.step(torch.tensor([t % VOCAB]), caches)
    assert [t.numel() for t in _tensors(caches)] == sizes


def _tensors(obj: object) -> list[torch.Tensor]:
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    return [t for v in vars(obj).values() for t in _tensors(v)] if hasattr(obj, "__dict__") else []


@pytest.mark.parametrize("name", MODELS)
def test_a_few_steps_lower_the_loss(name: str) -> None:
    model = MODELS[name]().train()
    tokens = torch.randint(0, VOCAB, (4, 33))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_wavenet_receptive_field() -> None:
    model = _wavenet()
    assert model.receptive_field == 1 + 2 * (1 + 2 + 4)
    a = torch.randint(0, VOCAB, (1, 40))
    b = a.clone()
    b[0, 5] = (b[0, 5] + 1) % VOCAB
    with torch.no_grad():
        diff = (model(a) - model(b)).abs().amax(-1)[0]
    changed = (diff > 0).nonzero().flatten()
    assert changed.min() == 5 and changed.max() == 5 + model.receptive_field - 1


def test_samplernn_rejects_frame_sizes_that_do_not_nest() -> None:
    with pytest.raises(ValueError, match="each dividing the one above"):
        SampleRNN(VOCAB, d_model=8, frame_sizes=[6, 4])


def test_paper_presets_sizes(make_config) -> None:
    from hydra.utils import instantiate

    for model, millions in (("wavenet", 4.26), ("samplernn", 32.34)):
        cfg = make_config([f"experiment=audio/sc09_{model}/paper", "logger=[]"])
        network = instantiate(cfg.model, vocab_size=256)
        assert sum(p.numel() for p in network.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)
