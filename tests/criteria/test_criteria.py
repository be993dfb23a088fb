from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from onnxprune import prune
from onnxprune.criteria import CRITERIA, Observation, get, register
from onnxprune.criteria.parts import activation, mean_of_abs
from onnxprune.data.sources import load_data, split
from onnxprune.errors import OnnxpruneError
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_batched
from onnxprune.torchview.finetune import Targets
from onnxprune.torchview.view import TorchView


@pytest.fixture(scope="module")
def setup():
    loaded = load(SAMPLES / "digits_mobilenet.onnx")
    data = load_data(SAMPLES / "digits", loaded.image, labels="imagefolder")
    train, _ = split(data, 0.5, 0)
    inputs = train.inputs[:64]
    teacher = run_batched(loaded.model, loaded.image.name, inputs)
    return loaded, analyze_groups(loaded), TorchView.of(loaded.model, loaded.image), inputs, Targets(teacher)


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_scores_every_prunable_channel(setup, name: str) -> None:
    loaded, analysis, view, inputs, targets = setup
    scores = view.scores(analysis, get(name), inputs, 32, targets, seed=0)
    assert set(scores) == {g.id for g in analysis.prunable}
    for g in analysis.prunable:
        assert scores[g.id].shape == (g.channels,) and np.isfinite(scores[g.id]).all()
    if name != "random":
        assert any(np.ptp(s) > 0 for s in scores.values()), "a criterion that cannot rank is no criterion"


def test_taylor_is_l2_normalized_per_group(setup) -> None:
    loaded, analysis, view, inputs, targets = setup
    scores = view.scores(analysis, get("taylor"), inputs, 32, targets, seed=0)
    norms = [np.linalg.norm(s) for s in scores.values() if np.linalg.norm(s) > 0]
    assert np.allclose(norms, 1.0)


def test_bn_scale_reads_batchnorm_gamma(setup) -> None:
    from onnx import numpy_helper

    loaded, analysis, view, inputs, targets = setup
    raw = view.scores(analysis, get("bn-scale"), inputs, 32, targets, 0)
    nodes = {n.name: n for n in loaded.model.graph.node}
    inits = {i.name: i for i in loaded.model.graph.initializer}
    bn_scales = [s for s in analysis.slots
                 if nodes[s.node].op_type == "BatchNormalization" and s.initializer == nodes[s.node].input[1]]
    checked = 0
    for g in analysis.prunable:
        mine = [s for s in bn_scales if g.id in s.segments]
        if len(mine) == 1 and mine[0].segments == (g.id,):
            gamma = np.abs(numpy_helper.to_array(inits[mine[0].initializer]))
            assert np.allclose(raw[g.id], gamma / np.linalg.norm(gamma))
            checked += 1
    assert checked > 0


def test_a_criterion_registered_outside_the_package_prunes_a_model_end_to_end() -> None:
    """A new criterion is one function and one register line: here, keep the channels whose
    activations are largest on average, and check the run really used it."""
    seen: list[int] = []

    @register("test-mean-abs-activation", observes=Observation(activation, mean_of_abs))
    def mean_abs_activation(group, stats) -> np.ndarray:
        seen.append(group.id)
        return stats.observed_sum(group)

    try:
        result = prune(SAMPLES / "digits_mobilenet.onnx", SAMPLES / "digits", 0.6, criterion="test-mean-abs-activation",
                       round_to=1, rounds=1, round_steps=1, epochs=0, lossless=False, bench=False, max_drop=100)
    finally:
        del CRITERIA["test-mean-abs-activation"]
    assert seen, "the registered function scored the groups"
    assert result.report.criterion == "test-mean-abs-activation" and result.report.flops.fraction <= 0.6


def test_an_observation_gives_one_array_per_batch_and_mean_activation_is_never_negative(setup) -> None:
    loaded, analysis, view, inputs, targets = setup
    scores = view.scores(analysis, get("mean-activation"), inputs, 32, targets, seed=0)
    observed = view.observe(analysis, get("mean-activation").observes, inputs, 32, targets, 0)
    some = next(iter(observed))
    assert len(observed[some]) == 2  # one array per batch of 32
    assert all((s >= 0).all() for s in scores.values())


def test_unknown_criterion_names_the_choices() -> None:
    with pytest.raises(OnnxpruneError, match="choose from .*taylor"):
        get("magic")


def test_gradients_are_scaled_out_of_the_subnormal_range_without_changing_a_score(setup, monkeypatch) -> None:
    """A confident model's loss gradient is tiny and everything behind it subnormal (ten times
    slower on x86): scoring scales it by a power of two and divides it out again, exactly."""
    import torch

    import onnxprune.criteria.observe as observe

    loaded, analysis, view, inputs, targets = setup
    seen = []
    scaled = observe._scaled_gradients

    def spy(loss, outputs):
        found = scaled(loss, outputs)
        seen.append(found[0])
        return found

    monkeypatch.setattr(observe, "_scaled_gradients", spy)
    taylor = get("taylor").observes
    with_scale = view.observe(analysis, taylor, inputs, 32, targets, seed=0)  # per tensor and batch, unnormalized
    assert seen and all(s == 2.0 ** round(np.log2(s)) for s in seen) and any(s != 1.0 for s in seen)
    monkeypatch.setattr(observe, "_scaled_gradients", lambda loss, outputs: (1.0, [loss], [torch.ones_like(loss)]))
    plain = view.observe(analysis, taylor, inputs, 32, targets, seed=0)
    for tensor, batches in plain.items():
        for a, b in zip(with_scale[tensor], batches):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
