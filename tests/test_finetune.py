"""Fine-tuning losses: what the student is pulled towards."""

from __future__ import annotations

import torch

from onnxprune.finetune import feature_mse, log_probabilities, loss_for


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
