from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from onnxprune.criteria import CRITERIA, Recipe, get
from onnxprune.data import load_data, split
from onnxprune.errors import OnnxpruneError
from onnxprune.finetune import Targets
from onnxprune.groups import analyze_groups
from onnxprune.load import load
from onnxprune.session import TorchView
from onnxprune.verify import run_batched


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
    raw = view.scores(analysis, Recipe("bn_scale", normalize="none"), inputs, 32, targets, 0)
    nodes = {n.name: n for n in loaded.model.graph.node}
    inits = {i.name: i for i in loaded.model.graph.initializer}
    bn_scales = [s for s in analysis.slots
                 if nodes[s.node].op_type == "BatchNormalization" and s.initializer == nodes[s.node].input[1]]
    checked = 0
    for g in analysis.prunable:
        mine = [s for s in bn_scales if g.id in s.segments]
        if len(mine) == 1 and mine[0].segments == (g.id,):
            gamma = np.abs(numpy_helper.to_array(inits[mine[0].initializer]))
            assert np.allclose(raw[g.id], gamma)
            checked += 1
    assert checked > 0


def test_new_criterion_is_a_new_combination_of_parts() -> None:
    recipe = Recipe("gradient", "mean_of_abs", aggregate="max", normalize="flops")
    assert recipe.needs_data
    with pytest.raises(ValueError):
        Recipe("gradient", "median")


def test_unknown_criterion_names_the_choices() -> None:
    with pytest.raises(OnnxpruneError, match="choose from .*taylor"):
        get("magic")
