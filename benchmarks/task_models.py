"""Small models trained on rendered data, one per task, for ``benchmarks/tasks.py``.

Everything is rendered offline and seeded: glyphs and words in the fonts matplotlib ships
(DejaVu, STIX, Computer Modern), shapes with PIL, noise and clutter with numpy. Each builder
trains its model for a few minutes on 2 cores and returns it with a sampler of fresh images.

- ``detector``: three shape classes on cluttered 96×96 images; a stride-8 anchor-free head
  decoded in the graph the YOLOv8 way, (N, 4 + C, A) of cx, cy, w, h and class scores.
- ``text_map``: a DB-style text detector: words on 64×128 pages, a one-channel probability map.
- ``reader``: a CRNN (convs → bidirectional LSTM → per-column classes, (T, N, 11)) reading 3-6
  digit strings, trained with CTC.
- ``embedder``: a CNN trained to tell 26 letters apart whose exported output is its
  L2-normalized 64-d feature (LpNormalization), as retrieval models ship.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

__all__ = ["TaskModel", "detector", "text_map", "reader", "embedder", "FONTS"]

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = sorted(str(p) for p in FONT_DIR.glob("*.ttf") if p.name.startswith(("DejaVu", "STIXGeneral", "cm"))
               and "Display" not in p.name and "cmex" not in p.name and "cmsy" not in p.name
               and "cmmi" not in p.name)


@dataclass
class TaskModel:
    name: str
    task: str
    module: nn.Module
    sample: Callable[[int, int], np.ndarray]  # (count, seed) → images (N, H, W, 3) uint8
    channels: int  # 3, or 1 for the reader
    note: str  # what training reached


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _noise_page(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A smooth random background with speckle: what renders sit on."""
    coarse = rng.integers(60, 200, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    page = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    page += rng.integers(-20, 20, page.shape, dtype=np.int16)
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))


def _train(module: nn.Module, batches: Callable[[int], tuple], loss_fn: Callable, steps: int, lr: float = 3e-3
           ) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    module.train()
    losses = []
    for step in range(steps):
        inputs, targets = batches(step)
        loss = loss_fn(module(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    module.eval()
    return losses


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) → onnxprune's default preprocessing: [0, 1], ImageNet mean/std, NCHW."""
    x = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255
    if x.shape[1] == 3:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    else:  # onnxprune gives a grayscale model the mean of ImageNet's statistics
        mean, std = torch.tensor(np.mean([0.485, 0.456, 0.406])), torch.tensor(np.mean([0.229, 0.224, 0.225]))
    return (x - mean) / std


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


# -- detection ------------------------------------------------------------------------------

SHAPES = ("square", "disc", "triangle")


DETECTOR_SIZE = 96  # 12 × 12 cells: a detector's output holds more than 100 candidates


def _shapes_image(rng: np.random.Generator, size: int = DETECTOR_SIZE) -> tuple[np.ndarray, np.ndarray]:
    page = _noise_page(rng, size, size)
    draw = ImageDraw.Draw(page)
    boxes = []
    for _ in range(rng.integers(1, 4)):
        side = int(rng.integers(12, 26))
        x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
        kind = int(rng.integers(0, 3))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if kind == 0:
            draw.rectangle([x0, y0, x0 + side, y0 + side], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + side, y0 + side], fill=colour)
        else:
            draw.polygon([(x0, y0 + side), (x0 + side, y0 + side), (x0 + side / 2, y0)], fill=colour)
        boxes.append([x0, y0, x0 + side, y0 + side, kind])
    for _ in range(rng.integers(0, 4)):  # clutter: strokes that are no shape
        xs = rng.integers(0, size, 4)
        draw.line([(int(xs[0]), int(xs[1])), (int(xs[2]), int(xs[3]))],
                  fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=2)
    return np.asarray(page), np.array(boxes, np.float32)


class ShapeDetector(nn.Module):
    """Stride-8 cells; each predicts objectness-free class scores and a box (distances to its
    sides, in pixels), decoded in the graph to YOLOv8's (N, 4 + C, A)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(3, 32, 2), _block(32, 32), _block(32, 64, 2), _block(64, 64),
                                  _block(64, 96, 2), _block(96, 96))
        self.cls = nn.Sequential(_block(96, 64), nn.Conv2d(64, classes, 1))
        self.box = nn.Sequential(_block(96, 64), nn.Conv2d(64, 4, 1))
        self.stride = 8

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.cls(f), F.softplus(self.box(f)) * self.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, dist = self.raw(x)
        n, _, h, w = logits.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        cx, cy = (xs + 0.5) * self.stride, (ys + 0.5) * self.stride
        x0, y0, x1, y1 = cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]
        boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1)
        return torch.cat([boxes, logits.sigmoid()], 1).flatten(2)  # (N, 4 + C, A)


def _detector_targets(boxes: list[np.ndarray], h: int, w: int, stride: int, classes: int):
    """Per cell: the class of the smallest box whose centre region holds the cell's centre, and
    its distances to the box's sides."""
    cls = torch.zeros(len(boxes), classes, h, w)
    dist = torch.zeros(len(boxes), 4, h, w)
    mask = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for i, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1, c in sorted(image_boxes.tolist(), key=lambda b: -(b[2] - b[0])):
            for gy in range(h):
                for gx in range(w):
                    px, py = (gx + 0.5) * stride, (gy + 0.5) * stride
                    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
                    if abs(px - mx) <= max(stride * 0.75, (x1 - x0) / 4) and abs(py - my) <= max(stride * 0.75,
                                                                                                (y1 - y0) / 4):
                        cls[i, :, gy, gx] = 0
                        cls[i, int(c), gy, gx] = 1
                        dist[i, :, gy, gx] = torch.tensor([px - x0, py - y0, x1 - px, y1 - py])
                        mask[i, gy, gx] = True
    return cls, dist, mask


def sample_shapes(count: int, seed: int) -> np.ndarray:
    """``count`` rendered images of the detector task, (N, H, W, C) uint8, seeded."""
    rng = np.random.default_rng([2, seed])
    return np.stack([_shapes_image(rng)[0] for _ in range(count)])


def detector(steps: int = 500, batch: int = 32) -> TaskModel:
    model = ShapeDetector()
    cache: dict[int, tuple] = {}

    def batches(step: int):
        rng = np.random.default_rng([1, step])
        pairs = [_shapes_image(rng) for _ in range(batch)]
        images = np.stack([p[0] for p in pairs])
        cells = DETECTOR_SIZE // 8
        cache[0] = _detector_targets([p[1] for p in pairs], cells, cells, 8, len(SHAPES))
        return to_input(images), cache[0]

    def loss(raw_out, targets):
        logits, dist = raw_out
        cls, want, mask = targets
        focal = F.binary_cross_entropy_with_logits(logits, cls, reduction="sum") / max(1, int(mask.sum()))
        box = (F.smooth_l1_loss(dist.permute(0, 2, 3, 1)[mask], want.permute(0, 2, 3, 1)[mask], beta=2.0)
               if mask.any() else logits.sum() * 0)
        return focal + 0.1 * box

    original_forward = model.forward
    model.forward = model.raw  # trained on the raw head; exported with the decode
    losses = _train(model, batches, loss, steps)
    model.forward = original_forward

    return TaskModel("shape_detector", "detect", model, sample_shapes, 3, f"final loss {np.mean(losses[-20:]):.3f}")


# -- text regions (DB-style probability map) ----------------------------------------------------

WORDS = ("pruning", "onnx", "model", "layer", "channel", "tensor", "kernel", "batch", "graph", "stride", "image",
         "latency", "weight", "score", "round", "export", "quality", "budget")


def _text_page(rng: np.random.Generator, height: int = 64, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    page = _noise_page(rng, height, width)
    draw = ImageDraw.Draw(page)
    mask = Image.new("L", (width, height), 0)
    marks = ImageDraw.Draw(mask)
    for _ in range(rng.integers(1, 4)):
        word = WORDS[int(rng.integers(len(WORDS)))]
        font = _font(FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(11, 20)))
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 18))
        shade = int(rng.integers(0, 60)) if rng.random() < 0.5 else int(rng.integers(200, 256))
        draw.text((x, y), word, fill=(shade, shade, shade), font=font)
        left, top, right, bottom = draw.textbbox((x, y), word, font=font)
        marks.rectangle([left, top, right, bottom], fill=255)
    return np.asarray(page), (np.asarray(mask) > 0).astype(np.float32)


class TextMap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down1, self.down2, self.down3 = _block(3, 24, 2), _block(24, 48, 2), _block(48, 64, 2)
        self.mid = _block(64, 64)
        self.up2, self.up1 = _block(64 + 48, 48), _block(48 + 24, 32)
        self.head = nn.Conv2d(32, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)
        b = self.down2(a)
        c = self.mid(self.down3(b))
        b2 = self.up2(torch.cat([F.interpolate(c, scale_factor=2.0, mode="nearest"), b], 1))
        a2 = self.up1(torch.cat([F.interpolate(b2, scale_factor=2.0, mode="nearest"), a], 1))
        return F.interpolate(self.head(a2), scale_factor=2.0, mode="bilinear", align_corners=False).sigmoid()


def sample_pages(count: int, seed: int) -> np.ndarray:
    """``count`` rendered images of the text_map task, (N, H, W, C) uint8, seeded."""
    rng = np.random.default_rng([4, seed])
    return np.stack([_text_page(rng)[0] for _ in range(count)])


def text_map(steps: int = 400, batch: int = 16) -> TaskModel:
    model = TextMap()

    def batches(step: int):
        rng = np.random.default_rng([3, step])
        pairs = [_text_page(rng) for _ in range(batch)]
        return to_input(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]

    losses = _train(model, batches, lambda out, want: F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), want), steps)

    return TaskModel("text_map", "segment", model, sample_pages, 3, f"final loss {np.mean(losses[-20:]):.3f}")


# -- CTC reader ----------------------------------------------------------------------------------

def _digit_line(rng: np.random.Generator, height: int = 32, width: int = 100) -> tuple[np.ndarray, list[int]]:
    text = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(3, 7))))
    page = _noise_page(rng, height, width).convert("L")
    draw = ImageDraw.Draw(page)
    font = _font(FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(16, 24)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = int(rng.integers(0, max(1, width - (right - left))))
    y = int(rng.integers(-top, max(-top + 1, height - bottom)))
    shade = int(rng.integers(0, 50))
    draw.text((x, y), text, fill=shade, font=font)
    return np.asarray(page)[..., None], [int(c) + 1 for c in text]  # class 0 is the blank


def sample_lines(count: int, seed: int) -> np.ndarray:
    """``count`` rendered images of the reader task, (N, H, W, C) uint8, seeded."""
    rng = np.random.default_rng([6, seed])
    return np.stack([_digit_line(rng)[0] for _ in range(count)])


def reader(steps: int = 900, batch: int = 32) -> TaskModel:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from crnn import CRNN

    model = CRNN("lstm", classes=11)

    def batches(step: int):
        rng = np.random.default_rng([5, step])
        pairs = [_digit_line(rng) for _ in range(batch)]
        return to_input(np.stack([p[0] for p in pairs])), [p[1] for p in pairs]

    def loss(log_probs, targets):
        steps_, n = log_probs.shape[0], log_probs.shape[1]
        flat = torch.tensor([c for t in targets for c in t])
        return F.ctc_loss(log_probs, flat, torch.full((n,), steps_, dtype=torch.long),
                          torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)

    losses = _train(model, batches, loss, steps, lr=2e-3)

    return TaskModel("digit_reader", "ctc", model, sample_lines, 1, f"final CTC loss {np.mean(losses[-20:]):.3f}")


# -- embedding -------------------------------------------------------------------------------------

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _letter(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, int]:
    label = int(rng.integers(len(LETTERS)))
    page = _noise_page(rng, size, size)
    draw = ImageDraw.Draw(page)
    font = _font(FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(16, 26)))
    left, top, right, bottom = draw.textbbox((0, 0), LETTERS[label], font=font)
    x = int(rng.integers(-left, max(-left + 1, size - right)))
    y = int(rng.integers(-top, max(-top + 1, size - bottom)))
    shade = int(rng.integers(0, 60))
    draw.text((x, y), LETTERS[label], fill=(shade, shade, shade), font=font)
    return np.asarray(page), label


class LetterEmbedder(nn.Module):
    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(3, 32), _block(32, 32, 2), _block(32, 64), _block(64, 64, 2),
                                  _block(64, 96), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, dim))
        self.classes = nn.Linear(dim, len(LETTERS))
        self.training_head = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.body(x)
        return self.classes(feature) if self.training_head else F.normalize(feature, dim=1)


def sample_letters(count: int, seed: int) -> np.ndarray:
    """``count`` rendered images of the embedder task, (N, H, W, C) uint8, seeded."""
    rng = np.random.default_rng([8, seed])
    return np.stack([_letter(rng)[0] for _ in range(count)])


def embedder(steps: int = 500, batch: int = 64) -> TaskModel:
    model = LetterEmbedder()

    def batches(step: int):
        rng = np.random.default_rng([7, step])
        pairs = [_letter(rng) for _ in range(batch)]
        return to_input(np.stack([p[0] for p in pairs])), torch.tensor([p[1] for p in pairs])

    losses = _train(model, batches, F.cross_entropy, steps)
    model.training_head = False

    return TaskModel("letter_embedder", "embed", model, sample_letters, 3, f"final loss {np.mean(losses[-20:]):.3f}")


# the renderers by task model name: images of a task without training its model
SAMPLERS = {"detector": sample_shapes, "text_map": sample_pages, "reader": sample_lines, "embedder": sample_letters}


def export(model: TaskModel, path: Path, height: int, width: int) -> Path:
    """torch's TorchScript export with its defaults (batch fixed at 1, BatchNorm folded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.module.eval(), (torch.zeros(1, model.channels, height, width),), str(path),
                          dynamo=False, input_names=["image"], output_names=["output"])
    return path
