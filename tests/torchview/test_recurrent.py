"""CNN + RNN readers: the recurrent layer imports, the convolutions in front of it prune."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from crnn import export_crnn

from onnxprune import prune
from onnxprune.graph.runtime import run_model


@pytest.mark.parametrize("rnn, dynamic", [("lstm", False), ("gru", True)])
def test_a_crnn_exported_by_torch_prunes_to_half_into_a_verified_file(tmp_path, rnn: str, dynamic: bool) -> None:
    path = export_crnn(tmp_path / f"{rnn}.onnx", rnn, dynamic_batch=dynamic)
    x = np.random.default_rng(0).standard_normal((20, 1, 32, 100)).astype(np.float32)
    result = prune(path, x, 0.5, rounds=2, round_steps=2, epochs=0.5, round_to=1, bench=False, max_drop=100,
                   batch_size=8)
    assert result.report.flops.fraction <= 0.5
    original = onnx.load(str(path))
    assert [o.type for o in result.model.graph.output] == [o.type for o in original.graph.output]
    (before,) = [w for w in original.graph.initializer if w.name == _recurrent_weight(original)]
    (after,) = [w for w in result.model.graph.initializer if w.name == before.name]
    assert after.dims[2] < before.dims[2] and after.dims[1] == before.dims[1]  # fewer inputs, same hidden size
    batch = 3 if dynamic else 1
    assert run_model(result.model, {"x": x[:batch]})[0].shape == (25, batch, 11)


def _recurrent_weight(model: onnx.ModelProto) -> str:
    return next(n.input[1] for n in model.graph.node if n.op_type in ("LSTM", "GRU"))


def test_the_convolutions_feeding_an_unrolled_recurrence_prune_with_its_step_inputs(tmp_path) -> None:
    from onnxprune.graph.groups import analyze_groups
    from onnxprune.graph.load import load

    path = export_crnn(tmp_path / "unrolled.onnx", "unrolled")
    analysis = analyze_groups(load(path))
    assert any("/cnn/cnn.4/Conv" in g.producers for g in analysis.prunable)  # seq[t] keeps the channels
    x = np.random.default_rng(0).standard_normal((20, 1, 32, 100)).astype(np.float32)
    result = prune(path, x, 0.5, rounds=1, round_steps=1, epochs=0, round_to=1, bench=False, max_drop=100)
    assert result.report.flops.fraction <= 0.5
    assert run_model(result.model, {"x": x[:1]})[0].shape == (25, 1, 11)
