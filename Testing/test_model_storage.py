"""How model packages are stored: the bundled default's fp16 weights load into an fp32
network, and a card names the terms of its weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from BrainMetSegLib.errors import ModelError
from BrainMetSegLib.models import DEFAULT_MODEL, ModelCard, load_package, save_package


def test_bundled_default_is_stored_fp16_and_runs_fp32():
    package = load_package(DEFAULT_MODEL)
    with safe_open(str(package.weights_path), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in dtypes and "F32" not in dtypes, dtypes
    net = package.load_network("cpu")
    floats = [t for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)
    assert package.card.license == "Apache-2.0"
    assert "fp16" in json.dumps(package.card.recipe)  # the card says how the weights are stored


def test_fp16_weights_load_as_the_fp32_values_they_round_to(tiny_model, tmp_path):
    net = tiny_model.load_network("cpu")
    half = net.half()
    package = save_package(half, tiny_model.card, tmp_path / "half")
    loaded = package.load_network("cpu")
    for (name, a), b in zip(half.state_dict().items(), loaded.state_dict().values()):
        if a.is_floating_point():
            assert b.dtype == torch.float32, name
            assert torch.equal(a.float(), b), name


def test_card_license_must_be_text(tiny_model):
    data = {**tiny_model.card.to_dict(), "license": 3}
    with pytest.raises(ModelError, match="'license' must be a string"):
        ModelCard.from_dict(data)
    assert ModelCard.from_dict({**data, "license": "CC-BY-4.0"}).license == "CC-BY-4.0"
    assert ModelCard.from_dict({k: v for k, v in data.items() if k != "license"}).license == ""
