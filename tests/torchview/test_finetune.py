"""Fine-tuning losses: what the student is pulled towards."""

from __future__ import annotations

import pytest
import torch

from onnxprune.data.sources import UNLABELLED
from onnxprune.torchview.finetune import (
    MixedLabels, feature_mse, labelled_nll, log_probabilities, loss_for, mixed_views,
)


def test_a_model_ending_in_softmax_is_distilled_on_its_own_probabilities() -> None:
    logits = torch.randn(8, 10)
    probs = torch.softmax(logits, 1)
    assert torch.allclose(log_probabilities(probs, probs), torch.log_softmax(logits, 1), atol=1e-5)
    assert torch.allclose(log_probabilities(logits, logits), torch.log_softmax(logits, 1))
    assert loss_for([probs], [probs], None, 1.0).abs() < 1e-6
    other = torch.softmax(torch.randn(8, 10), 1)
    assert loss_for([other], [probs], None, 1.0) > 0.1


def test_detector_outputs_are_compared_feature_by_feature() -> None:
    torch.manual_seed(0)
    teacher = torch.cat([torch.rand(4, 4, 300) * 640, torch.rand(4, 80, 300)], 1)
    wrong_classes = teacher.clone()
    wrong_classes[:, 4:] = torch.rand(4, 80, 300)
    assert torch.nn.functional.mse_loss(wrong_classes, teacher) / teacher.var() < 1e-3  # invisible overall
    assert feature_mse(wrong_classes, teacher) > 1.0  # seen per feature
    assert feature_mse(teacher, teacher) == 0


def test_the_mixed_precision_channels_last_path_trains_and_hands_back_a_plain_module() -> None:
    # the CUDA defaults (bf16 autocast, channels-last) run on the CPU too: the same code path
    import numpy as np

    from onnxprune.data.sources import Dataset
    from onnxprune.torchview.finetune import TrainSettings, finetune
    from onnxprune.graph.image_input import ImageInput

    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8), torch.nn.Flatten()).requires_grad_(False)
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    data = Dataset.of_array(x, labels=np.arange(16) % 4, image=ImageInput("x", "NCHW", 3, 8, 8, "N"))
    before = student[0].weight.detach().clone()
    settings = TrainSettings(batch_size=8, precision="bf16", channels_last=True, augment="crop")
    losses = finetune(student, data, lambda batch, _positions: [teacher(batch)], 3, settings,
                      lambda m, batch: [m(batch)], seed=0)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert not torch.equal(before, student[0].weight)
    assert student[0].weight.is_contiguous() and student[0].weight.dtype == torch.float32


def test_batchnorm_ends_with_the_statistics_of_the_views_under_the_final_weights() -> None:
    import numpy as np

    from onnxprune.data.sources import Dataset
    from onnxprune.graph.image_input import ImageInput
    from onnxprune.torchview.finetune import TrainSettings, finetune

    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8), torch.nn.Flatten()).requires_grad_(False)
    x = 3 + 2 * np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    data = Dataset.of_array(x, image=ImageInput("x", "NCHW", 3, 8, 8, "N"))
    settings = TrainSettings(batch_size=32, augment="none", lr=0.05)  # large steps: a moving average lags
    finetune(student, data, lambda batch, _positions: [teacher(batch)], 6, settings, lambda m, batch: [m(batch)])
    with torch.no_grad():
        conv = student[0](torch.from_numpy(x))  # what the BatchNorm reads, with the final weights
    norm = student[1]
    assert not norm.training and norm.momentum == 0.1  # its own momentum back
    assert torch.allclose(norm.running_mean, conv.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(norm.running_var, conv.var((0, 2, 3)), rtol=0.05)


def test_a_few_dozen_images_still_get_a_floor_of_steps_per_epoch() -> None:
    from onnxprune.torchview.finetune import MIN_EPOCH_STEPS, epoch_steps

    assert epoch_steps(40, 32) == MIN_EPOCH_STEPS == 10  # not 2: the schedule does not shrink to nothing
    assert epoch_steps(3200, 32) == 100


def test_each_output_is_distilled_for_what_it_is() -> None:
    """A sequence of class scores by KL at every position, an embedding by its angle, a box by MSE."""
    torch.manual_seed(0)
    seq = torch.randn(4, 25, 11).log_softmax(2)
    emb = torch.nn.functional.normalize(torch.randn(4, 64), dim=1)
    kinds = (("classes", 2), ("embedding", 1))
    assert float(loss_for([seq, emb], [seq, emb], None, 0.0, kinds)) == pytest.approx(0.0, abs=1e-6)
    # a KL per position: shuffling the classes of one position costs only there
    moved = seq.clone()
    moved[0, 3] = moved[0, 3].flip(0)
    per_position = (seq.exp() * (seq - moved)).sum(2).mean()
    assert float(loss_for([moved], [seq], None, 0.0, kinds[:1])) == pytest.approx(float(per_position), rel=1e-5)
    # an embedding scaled is the same direction: no loss (MSE would see one)
    assert float(loss_for([2 * emb], [emb], None, 0.0, (("embedding", 1),))) == pytest.approx(0.0, abs=1e-6)
    assert float(loss_for([-emb], [emb], None, 0.0, (("embedding", 1),))) == pytest.approx(2.0)


def test_mixed_views_are_seeded_and_mix_the_batch() -> None:
    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 3, 8, 8).contiguous()
    a, no_labels = mixed_views(x, torch.Generator().manual_seed(1))
    b, _ = mixed_views(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and no_labels is None
    assert not torch.equal(a, mixed_views(x, torch.Generator().manual_seed(2))[0])
    # mixing keeps every input within the batch's range, give or take the jitter and noise
    spread = float(x.std())
    assert float(a.min()) > -spread and float(a.max()) < 3 + spread


def test_labels_follow_a_mixed_input_by_its_weights() -> None:
    # the inputs are their own labels (0..3, constant images), so each mixed input's mean, noise
    # and jitter aside, lies near weight · first + (1 − weight) · second
    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 3, 8, 8).contiguous()
    labels = torch.arange(4)
    mixed, y = mixed_views(x, torch.Generator().manual_seed(3), labels)
    assert y is not None and torch.equal(y.first, labels)
    expected = y.weight * y.first + (1 - y.weight) * y.second
    assert torch.allclose(mixed.mean((1, 2, 3)), expected.float(), atol=0.6)
    # the cross-entropy of a mixed row is its labels' by their shares; a missing label counts nothing
    log_probs = torch.log_softmax(torch.randn(4, 5), 1)
    half = MixedLabels(torch.tensor([1, 2, 3, 4]), torch.tensor([0, UNLABELLED, 3, 1]), torch.full((4,), 0.25))
    rows = torch.arange(4)
    want = (0.25 * -log_probs[rows, half.first] + 0.75 * -log_probs[rows, torch.tensor([0, 0, 3, 1])]
            * torch.tensor([1.0, 0.0, 1.0, 1.0])).sum() / 4
    assert torch.allclose(labelled_nll(log_probs, half), want)
