"""The option enums are the configs' types: strings become members once, on creation; what is
written (run.json, a card's recipe, a command line) stays the same strings; the CLI's choices
are the enums' values."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum

import pytest

from BrainMetSegLib.errors import OptionError
from BrainMetSegLib.options import (
    TRAIN_PRECISIONS,
    Backend,
    BlendMode,
    Device,
    InferenceMode,
    MaskMethod,
    Normalisation,
    PosSampling,
    Precision,
    ProgressMode,
    ScorerMode,
    SkullstripGrid,
    as_option,
    values,
)


def plain(value):
    """``value`` with every enum member replaced by its value (what the configs held before)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


def test_configs_turn_strings_into_members_and_json_is_unchanged():
    from BrainMetSegLib.inference import InferenceConfig
    from BrainMetSegLib.pipeline import SegmentConfig
    from BrainMetSegLib.preprocess import PreprocessConfig
    from BrainMetSegLib.train.config import TrainConfig

    seg = SegmentConfig(device="cpu", precision="fp32", inference_mode="paper", blend_mode="gaussian",
                        mode="sensitive", brain_mask="none")
    assert (seg.device, seg.precision, seg.inference_mode, seg.blend_mode, seg.mode, seg.brain_mask) == (
        Device.CPU, Precision.FP32, InferenceMode.PAPER, BlendMode.GAUSSIAN, ScorerMode.SENSITIVE, MaskMethod.NONE)
    assert all(isinstance(v, Enum) for v in (seg.device, seg.precision, seg.inference_mode, seg.brain_mask))
    pre = PreprocessConfig(brain_mask="deepbet", normalisation="nnunet-zscore", device="cpu",
                           skullstrip_grid="model-grid")
    assert pre.normalisation is Normalisation.NNUNET_ZSCORE and pre.skullstrip_grid is SkullstripGrid.MODEL_GRID
    assert pre.brain_mask is MaskMethod.DEEPBET
    inf = InferenceConfig(mode="whole", blend_mode="constant", device="auto", precision="bf16")
    assert dataclasses.replace(inf, mode="paper").mode is InferenceMode.PAPER  # replace checks again
    train = TrainConfig(device="cpu", precision="fp32", brain_mask="none", pos_sampling="lesion")
    assert (train.device, train.brain_mask, train.pos_sampling) == (Device.CPU, MaskMethod.NONE, PosSampling.LESION)
    for config in (seg, pre, inf, train):
        # run.json (settings, preprocess, inference), the preprocessing cache key and a trained
        # card's recipe are json.dumps of asdict: the same bytes as with plain strings
        as_dict = dataclasses.asdict(config)
        assert json.dumps(as_dict, sort_keys=True) == json.dumps(plain(as_dict), sort_keys=True)
        assert all(type(v) is str for v in json.loads(json.dumps(as_dict)).values() if isinstance(v, str))


def test_a_mask_file_stays_as_given():
    from BrainMetSegLib.pipeline import SegmentConfig
    from BrainMetSegLib.preprocess import PreprocessConfig

    for path in ("masks/brain.nii.gz", "./none.nii.gz", "deepbet.nrrd"):
        assert SegmentConfig(brain_mask=path).brain_mask == path
        assert type(PreprocessConfig(brain_mask=path).brain_mask) is str
    with pytest.raises(OptionError, match="--brain-mask must be deepbet, none or a mask file"):
        SegmentConfig(brain_mask=" ")


def test_a_wrong_choice_names_the_option_and_lists_the_valid_ones():
    from BrainMetSegLib.inference import InferenceConfig
    from BrainMetSegLib.pipeline import SegmentConfig
    from BrainMetSegLib.progress import reporter
    from BrainMetSegLib.train.config import TrainConfig

    cases = ((lambda: SegmentConfig(device="gpu"), "--device 'gpu' is not one of auto, cpu, cuda"),
             (lambda: InferenceConfig(mode="tiles"), "--inference-mode 'tiles' is not one of auto, whole, paper"),
             (lambda: TrainConfig(precision="fp16"), "--precision 'fp16' is not one of auto, fp32, bf16, int8"),
             (lambda: TrainConfig(precision="int8"), "--precision int8: training runs in auto, fp32, bf16"),
             (lambda: reporter("xml"), "--progress 'xml' is not one of bar, json, none"))
    for make, message in cases:
        with pytest.raises(OptionError, match=message):
            make()
    assert as_option(Device, Device.CUDA, "--device") is Device.CUDA
    with pytest.raises(ValueError, match="device 'gpu' is not one of"):
        as_option(Device, "gpu", "device", ValueError)


def test_the_slicer_command_line_is_plain_strings():
    from BrainMetSegLib.slicer_bridge import RunOptions, segment_command

    options = RunOptions(device="cpu", brain_mask="none", output_format="nii.gz")
    cmd = segment_command("py", {"t1ce": "a.nrrd"}, "o", options)
    assert options.device is Device.CPU and options.brain_mask is MaskMethod.NONE
    assert all(type(a) is str for a in cmd)
    assert cmd[4:] == ["a.nrrd", "-o", "o", "--progress", "json", "--format", "nii.gz", "--device", "cpu",
                       "--brain-mask", "none"]


def test_cli_choices_are_the_enums_values():
    from BrainMetSegLib.cli import build_parser

    parser = build_parser(("segment", "train", "compare", "evaluate", "synth"))
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    expected = {"--device": values(Device), "--precision": values(Precision), "--progress": values(ProgressMode),
                "--inference-mode": values(InferenceMode), "--blend": values(BlendMode), "--mode": values(ScorerMode),
                "--pos-sampling": values(PosSampling), "--backend": values(Backend)}
    seen = set()
    for name, command in sub.choices.items():
        for action in command._actions:
            for flag in set(action.option_strings) & set(expected):
                want = tuple(p.value for p in TRAIN_PRECISIONS) if (name, flag) == ("train", "--precision") \
                    else expected[flag]  # an int8 network is made from trained weights, never trained
                assert tuple(action.choices) == want, (name, flag)
                assert all(type(c) is str for c in action.choices)  # argparse's messages show their repr
                seen.add((name, flag))
    assert {("segment", "--device"), ("train", "--device"), ("compare", "--device"), ("evaluate", "--progress"),
            ("synth", "--progress"), ("compare", "--progress"), ("train", "--pos-sampling"),
            ("segment", "--backend")} <= seen
    train = next(a for a in sub.choices["train"]._actions if "--brain-mask" in a.option_strings)
    assert tuple(train.choices) == values(MaskMethod)


def test_window_options_with_a_whole_volume_forward_are_refused():
    from BrainMetSegLib.pipeline import SegmentConfig

    for extra in ({"overlap": 0.5}, {"blend_mode": "gaussian"}):
        with pytest.raises(OptionError, match="--inference-mode whole runs one forward"):
            SegmentConfig(inference_mode="whole", **extra)
    SegmentConfig(inference_mode="paper", overlap=0.5, blend_mode="gaussian")  # where they apply


@pytest.mark.parametrize("plan, config, said", [
    ({"mode": "whole", "overlap": 0.0}, {"overlap": 0.5, "blend_mode": "gaussian"},
     "--overlap 0.5 and --blend gaussian not used: the volume fitted one whole-volume forward"),
    ({"mode": "windows", "overlap": 0.25}, {"overlap": 0.5, "blend_mode": "gaussian"},
     "--overlap 0.5 not used: the volume ran in large windows overlapping by 0.25"),
    ({"mode": "windows", "overlap": 0.25}, {"overlap": 0.25}, None),   # what ran
    ({"mode": "paper", "overlap": 0.5}, {"overlap": 0.5}, None),
    ({"mode": "whole", "overlap": 0.0}, {}, None),                     # nothing asked
    ({"mode": "paper", "overlap": 0.5}, {"memory_budget_mb": 500}, "--memory-budget 500 not used"),
    ({"mode": "whole", "overlap": 0.0, "backend": {"used": "torch"}}, {"backend_cache": "/tmp/c"},
     "--backend-cache /tmp/c not used: nothing ran through OpenVINO"),
    ({"mode": "whole", "overlap": 0.0, "backend": {"used": "openvino"}}, {"backend_cache": "/tmp/c"}, None),
])
def test_unused_options_are_said(plan, config, said):
    from BrainMetSegLib.pipeline import SegmentConfig, unused_options

    notes = unused_options(SegmentConfig(**config), plan)
    assert (notes[0].startswith(said) if said else notes == []), notes
