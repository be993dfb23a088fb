"""The one slicer: every keep-set computes what zeroing the dropped channels computes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLE_MODELS, SAMPLES
from pruning_checks import check_random_slice
from zoo import TESTED

from onnxprune.errors import OnnxpruneError
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.slice import check_keep, take


def test_take_keeps_indices_along_an_axis_in_order() -> None:
    array = np.arange(24).reshape(2, 3, 4)
    assert take(array, np.array([0, 2]), axis=1).tolist() == array[:, [0, 2], :].tolist()


def test_keep_sets_are_checked_before_anything_is_sliced() -> None:
    analysis = analyze_groups(load(SAMPLES / "digits_vgg.onnx"))
    group = analysis.prunable[0]
    blocked = next(g for g in analysis.groups if g.blocked)
    assert check_keep(analysis, {group.id: [3, 1, 1]})[group.id].tolist() == [1, 3]
    with pytest.raises(OnnxpruneError, match="in range"):
        check_keep(analysis, {group.id: [group.channels]})
    with pytest.raises(OnnxpruneError, match="is blocked"):
        check_keep(analysis, {blocked.id: [0]})


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_random_keep_set_slices_sample_models_exactly(name: str) -> None:
    check_random_slice(load(SAMPLES / name))


@pytest.mark.slow
@pytest.mark.parametrize("name, exporter, dynamic", TESTED)
def test_random_keep_set_slices_zoo_models_exactly(zoo_model, name: str, exporter: str, dynamic: bool) -> None:
    check_random_slice(load(zoo_model(name, exporter, dynamic)))


def test_soft_pruning_switches_channels_off_exactly_like_slicing_them() -> None:
    from onnxprune.graph.runtime import run_model
    from onnxprune.graph.slice import slice_model, zero_channels

    loaded = load(SAMPLES / "digits_vgg.onnx")  # BN folded, ReLU: a zeroed producer gives exact zeros
    analysis = analyze_groups(loaded)
    rng = np.random.default_rng(0)
    keep = {g.id: np.sort(rng.choice(g.channels, g.channels // 2, replace=False)) for g in analysis.prunable}
    zeroed = zero_channels(loaded.model, analysis, keep)
    shapes = {i.name: tuple(i.dims) for i in zeroed.graph.initializer}
    assert shapes == {i.name: tuple(i.dims) for i in loaded.model.graph.initializer}
    x = {loaded.image.name: rng.standard_normal(loaded.image.shape(4)).astype(np.float32)}
    soft = run_model(zeroed, x)[0]
    hard = run_model(slice_model(loaded.model, analysis, keep), x)[0]
    np.testing.assert_allclose(soft, hard, rtol=1e-4, atol=1e-4 * np.abs(hard).max())
