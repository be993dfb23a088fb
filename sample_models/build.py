"""Build the bundled sample models and images from scikit-learn's handwritten digits.

Deterministic (seeded, single-threaded) and a few minutes on 2 CPU cores:

    python sample_models/build.py

Writes, next to this file (``--chars``: only the character models, see ``chars.py``):
- digits_vgg.onnx        plain VGG-style CNN, Flatten → Gemm head (BN folded by the exporter)
- digits_resnet.onnx     ResNet-style net with BatchNormalization and residual adds
- digits_mobilenet.onnx  MobileNetV2-style net: depthwise convs, squeeze-excite, BN
- digits_mobilenet.dynamo.onnx  the same network through torch's dynamo exporter
- digits_*.default.onnx  each network exported with the TorchScript exporter's defaults, as
                         most users' files are: batch fixed at 1, BatchNorm folded into the convs
- digits/0 … digits/9    the held-out digits as 32×32 RGB PNG files (never trained on)
- README.md              validation accuracy of each model, as measured here

``python sample_models/build.py --defaults`` writes only the ``.default.onnx`` files, from the
shipped ``.onnx`` files (imported into torch, the same weights), without training again.

Images are the 8×8 digits scaled to [0, 1], upsampled to 32×32 and repeated to RGB; the models
expect them normalized with ImageNet's mean/std, onnxprune's default preprocessing.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn

from chars import CLASSES as CHAR_CLASSES, render_set

HERE = Path(__file__).resolve().parent
SIZE = 32
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def digits_as_images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, held-out images, held-out labels); images in [0, 1], RGB 32×32."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = images.clamp(0, 1).repeat(1, 3, 1, 1)
    # Quantize as the PNG files will be, so training sees exactly what onnxprune will read.
    images = torch.round(images * 255) / 255
    labels = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    # Half is held out: onnxprune's users bring data of their own, and a 15 % validation share of
    # 898 images (135) resolves accuracy to better than one point.
    n_val = len(labels) // 2
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class VGG(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(
            *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            *block(64, 64), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, stride), nn.ReLU(), conv_bn(cout, cout))
        self.skip = conv_bn(cin, cout, stride, k=1) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 32), nn.ReLU())
        self.stages = nn.Sequential(
            BasicBlock(32, 32, 1), BasicBlock(32, 32, 1),
            BasicBlock(32, 64, 2), BasicBlock(64, 64, 1),
            BasicBlock(64, 96, 2),
        )
        self.head = nn.Linear(96, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, se: bool) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [conv_bn(cin, hidden, k=1), nn.ReLU6(),
                                   conv_bn(hidden, hidden, stride, groups=hidden), nn.ReLU6()]
        if se:
            layers.append(SqueezeExcite(hidden, max(8, hidden // 4)))
        layers.append(conv_bn(hidden, cout, k=1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 1), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 24, 2, 4, se=False),
            InvertedResidual(24, 24, 1, 4, se=False),
            InvertedResidual(24, 40, 2, 4, se=True),
            InvertedResidual(40, 40, 1, 4, se=True),
        )
        self.last = nn.Sequential(conv_bn(40, 128, k=1), nn.ReLU6())
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.blocks(self.stem(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels: cheap augmentation that keeps digits readable."""
    dx, dy = torch.randint(-2, 3, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(y) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            idx = order[start : start + 64]
            batch = normalize(shift(x[idx], generator))
            loss = F.cross_entropy(model(batch), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def train_rendered(model: nn.Module, epochs: int, per_class: int, seed: int) -> nn.Module:
    """Training on the character task: every epoch draws fresh renders (seeds 1000 + epoch, never
    the seeds of the images that ship or that tests prune with), so the model sees no image twice."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((per_class * len(CHAR_CLASSES) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        images, labels = render_set(per_class, 1000 + epoch)
        x, y = as_tensor(images), torch.from_numpy(labels)
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            idx = order[start : start + 64]
            loss = F.cross_entropy(model(normalize(x[idx])), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(normalize(x)).argmax(1) == y).float().mean())


def export(model: nn.Module, path: Path, dynamo: bool = False, keep_bn: bool = True) -> None:
    example = torch.zeros(1, 3, SIZE, SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=["image"], output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), verbose=False,
            )
            program.save(str(path))
        else:
            # do_constant_folding=False keeps BatchNormalization, as most non-torch exports do.
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=17,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                do_constant_folding=not keep_bn,
            )


def export_default(model: nn.Module, path: Path) -> None:
    """torch.onnx.export with its defaults: the batch fixed at 1, BatchNorm folded by constant
    folding in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(path), dynamo=False,
                          input_names=["image"], output_names=["logits"])


def defaults_from_shipped() -> None:
    """The .default.onnx files from the shipped models, through onnxprune's own torch import."""
    from onnxprune.importer import import_model
    from onnxprune.load import load

    for name in ("digits_vgg", "digits_resnet", "digits_mobilenet"):
        export_default(import_model(load(HERE / f"{name}.onnx")).module, HERE / f"{name}.default.onnx")
        print(f"wrote {name}.default.onnx", flush=True)


def write_images(x: torch.Tensor, y: torch.Tensor, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    for i, (image, label) in enumerate(zip(x, y)):
        target = folder / str(int(label))
        target.mkdir(parents=True, exist_ok=True)
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(target / f"{i:04d}.png", optimize=True)


CHAR_MODELS = (("chars_vgg", VGG, 8, False), ("chars_resnet", ResNet, 6, True), ("chars_mobilenet", MobileNet, 10, True))
CHAR_PER_CLASS = 250  # rendered training images per class and epoch (11,750 an epoch)
CHAR_HELD_OUT_SEED, CHAR_HELD_OUT_PER_CLASS = 2, 40  # the accuracy the README states: 1,880 fresh renders


def train_char_model(spec: tuple) -> tuple[str, float]:
    """One character model trained (single-threaded: bit-for-bit repeatable) and exported in
    both forms; returns its name and held-out accuracy."""
    name, build, epochs, keep_bn = spec
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = train_rendered(build(len(CHAR_CLASSES)), epochs, CHAR_PER_CLASS, seed=0)
    images, labels = render_set(CHAR_HELD_OUT_PER_CLASS, CHAR_HELD_OUT_SEED)
    acc = accuracy(model, as_tensor(images), torch.from_numpy(labels))
    export(model, HERE / f"{name}.onnx", keep_bn=keep_bn)
    export_default(model, HERE / f"{name}.default.onnx")
    print(f"{name}: held-out accuracy {acc:.4f}", flush=True)
    return name, acc


def build_chars() -> None:
    """The character models, two at a time (one core each): 7.5 minutes on 2 cores."""
    import multiprocessing
    import time

    started = time.perf_counter()
    # the slowest (ResNet) beside the other two in turn
    order = sorted(CHAR_MODELS, key=lambda spec: spec[0] != "chars_resnet")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = dict(pool.map(train_char_model, order, chunksize=1))
    print(f"character models built in {(time.perf_counter() - started) / 60:.1f} minutes", flush=True)
    rows = [f"| {name}{suffix} | {exporter} | {results[name]:.2%} |" for name, *_ in CHAR_MODELS
            for suffix, exporter in ((".onnx", "torchscript"), (".default.onnx", "torchscript, defaults (batch 1, BN folded)"))]
    _write_readme_section(CHARS_SECTION, [
        CHARS_SECTION,
        "",
        "Built by `python sample_models/build.py --chars` (7.5 minutes on 2 cores) from printed",
        f"characters rendered offline by `sample_models/chars.py`: {len(CHAR_CLASSES)} classes (digits, capitals and",
        "the lower-case letters shaped unlike their capital), 21 fonts that ship with matplotlib, affine",
        "distortion, ink and paper colours, clutter, blur and noise. Every training epoch drew fresh",
        "renders; the accuracy below is on 1,880 renders of seed 2, which no model saw. Nothing is",
        "committed but the models: `python sample_models/chars.py DIR --per-class 8 --seed 1` writes the",
        "images tests and benchmarks prune with (one folder per class, `--labels imagefolder`).",
        "",
        "| file | exporter | held-out accuracy |",
        "| --- | --- | --- |",
        *rows,
        "",
    ])


CHARS_SECTION = "## Printed characters (the harder task)"


def _write_readme_section(heading: str, lines: list[str]) -> None:
    """Replace the README's section under ``heading`` (to the next heading or the end)."""
    path = HERE / "README.md"
    text = path.read_text() if path.exists() else ""
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + "\n".join(lines) + (text[end:] if end >= 0 else "")
    path.write_text(text)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # bit-for-bit repeatable training
    x_train, y_train, x_val, y_val = digits_as_images()
    rows = []
    for name, build, epochs, keep_bn in (
        ("digits_vgg", VGG, 12, False),
        ("digits_resnet", ResNet, 12, True),
        ("digits_mobilenet", MobileNet, 20, True),
    ):
        torch.manual_seed(0)
        model = train(build(), x_train, y_train, epochs, seed=0)
        acc = accuracy(model, x_val, y_val)
        export(model, HERE / f"{name}.onnx", keep_bn=keep_bn)
        rows.append((f"{name}.onnx", "torchscript", acc))
        export_default(model, HERE / f"{name}.default.onnx")
        rows.append((f"{name}.default.onnx", "torchscript, defaults (batch 1, BN folded)", acc))
        if name == "digits_mobilenet":
            export(model, HERE / f"{name}.dynamo.onnx", dynamo=True)
            rows.append((f"{name}.dynamo.onnx", "dynamo", acc))
        print(f"{name}: validation accuracy {acc:.4f}", flush=True)
    write_images(x_val, y_val, HERE / "digits")
    lines = [
        "# Sample models",
        "",
        "Built by `python sample_models/build.py` from scikit-learn's handwritten digits",
        f"(1,797 real 8×8 scans, upsampled to 32×32 RGB). `digits/` holds the {len(y_val)} held-out",
        "images none of the models was trained on, one folder per class. Inputs are normalized",
        "with ImageNet's mean/std (onnxprune's default).",
        "",
        "| file | exporter | held-out accuracy |",
        "| --- | --- | --- |",
        *[f"| {f} | {e} | {a:.2%} |" for f, e, a in rows],
        "",
        "The `.default.onnx` files are what most users bring: `torch.onnx.export(model.eval(), x, path)`",
        "with nothing else set fixes the batch at 1 and folds BatchNorm into the convs. They are made",
        "from the files above (`python sample_models/build.py --defaults`, the same weights).",
        "",
    ]
    readme = HERE / "README.md"
    kept = readme.read_text()[readme.read_text().find(CHARS_SECTION):] if CHARS_SECTION in readme.read_text() else ""
    readme.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    import sys

    if "--defaults" in sys.argv[1:]:
        defaults_from_shipped()
    elif "--chars" in sys.argv[1:]:
        build_chars()
    else:
        main()
