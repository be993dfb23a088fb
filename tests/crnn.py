"""A CNN + RNN reader (CRNN) as OCR and captcha models are built: conv features, columns as time
steps, a bidirectional LSTM or GRU, per-step classes, sequence-first (T, N, classes)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["CRNN", "UnrolledReader", "export_crnn"]


class CRNN(nn.Module):
    def __init__(self, rnn: str = "lstm", classes: int = 11, height: int = 32) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d((2, 1)))
        features = 64 * (height // 8)
        self.rnn = (nn.LSTM if rnn == "lstm" else nn.GRU)(features, 48, bidirectional=True)
        self.fc = nn.Linear(96, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cnn(x)
        n, c, h, w = f.shape
        y, _ = self.rnn(f.reshape(n, c * h, w).permute(2, 0, 1))  # (T, N, C·H)
        return self.fc(y).log_softmax(2)


class UnrolledReader(nn.Module):
    """The same reader with its recurrence written out step by step (``seq[t]`` → Gemm + MatMul),
    as exporters leave a hand-written cell."""

    def __init__(self, classes: int = 11) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.inp, self.rec, self.fc = nn.Linear(32 * 8, 48), nn.Linear(48, 48, bias=False), nn.Linear(48, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cnn(x)
        n, c, h, w = f.shape
        seq = f.reshape(n, c * h, w).permute(2, 0, 1)
        state, steps = torch.zeros(n, 48), []
        for t in range(w):
            state = torch.tanh(self.inp(seq[t]) + self.rec(state))
            steps.append(self.fc(state))
        return torch.stack(steps).log_softmax(2)


def export_crnn(path: Path, rnn: str = "lstm", dynamic_batch: bool = False, seed: int = 0) -> Path:
    """torch's TorchScript export (``rnn``: lstm, gru or unrolled) with its defaults (batch fixed
    at 1, BatchNorm folded), or a dynamic batch on the input and on the output's second axis."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = UnrolledReader() if rnn == "unrolled" else CRNN(rnn)
        torch.onnx.export(model.eval(), (torch.randn(1, 1, 32, 100),), str(path), dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {1: "n"}} if dynamic_batch else None)
    return path
