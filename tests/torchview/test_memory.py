"""Micro-batches: sized from the activations and the free memory, the same step as the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graphs import GraphBuilder

from onnxprune.data.sources import Dataset
from onnxprune.errors import OnnxpruneError
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.torchview.finetune import TrainSettings, finetune
from onnxprune.torchview.memory import TRAIN_FACTOR, activation_bytes, available_bytes, plan_memory


def _conv_net(size: int = 32):
    g = GraphBuilder(input_shape=("n", 3, size, size))
    c = g.node("Relu", [g.conv("x", 3, 8)])
    return load(g.build([g.conv(c, 8, 4)]), (size, size))


@pytest.mark.slow  # an end-to-end run of a path off by default: CI runs it (--all)
def test_the_micro_batch_is_what_the_free_memory_holds() -> None:
    loaded = _conv_net()
    shapes = analyze_groups(loaded).shapes
    sample = activation_bytes(loaded.model, shapes)
    assert sample == 4 * (8 + 8 + 4) * 32 * 32  # conv, relu, conv outputs of one sample
    ten_samples = int(10 * TRAIN_FACTOR * sample / 0.4)
    assert plan_memory(loaded.model, shapes, 32, "cpu", available=ten_samples).micro_batch == 10
    assert plan_memory(loaded.model, shapes, 8, "cpu", available=ten_samples).micro_batch == 8
    assert available_bytes() > 0


def test_a_run_where_one_sample_does_not_fit_stops_with_what_it_needs() -> None:
    loaded = _conv_net()
    with pytest.raises(OnnxpruneError, match="one sample needs about .* GB to fine-tune"):
        plan_memory(loaded.model, analyze_groups(loaded).shapes, 32, "cpu", available=1000)


def test_accumulated_micro_batches_take_the_same_step_as_the_whole_batch() -> None:
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    data = Dataset.of_array(x)
    teacher_net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())

    def teacher(batch, _positions):
        with torch.no_grad():
            return [teacher_net(batch)]

    def trained(micro: int) -> torch.Tensor:
        torch.manual_seed(1)
        student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
        settings = TrainSettings(batch_size=8, micro_batch=micro, lr=1e-2)
        finetune(student, data, teacher, 3, settings, lambda m, b: [m(b)])
        return student[0].weight.detach().clone()

    torch.manual_seed(1)
    untrained = torch.nn.Conv2d(3, 4, 3).weight.detach()
    whole, micro = trained(0), trained(3)  # 3 + 3 + 2
    assert (whole - untrained).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(micro, whole, rtol=1e-4, atol=1e-5)


def test_running_out_of_memory_halves_the_micro_batch_and_retries_the_step(caplog) -> None:
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    torch.manual_seed(1)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    sizes = []

    def run(module, batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 12 GB")
        return [module(batch)]

    losses = finetune(student, Dataset.of_array(x), lambda b, _p: [teacher(b)], 2,
                      TrainSettings(batch_size=8, micro_batch=8), run)
    assert len(losses) == 2 and sizes[:3] == [8, 4, 2] and set(sizes[3:]) == {2}
    assert "retrying the step with 4" in caplog.text

    def never(module, batch):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OnnxpruneError, match="ran out of memory with one sample at a time"):
        finetune(student, Dataset.of_array(x), lambda b, _p: [teacher(b)], 1, TrainSettings(batch_size=8), never)
