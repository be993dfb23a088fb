"""Fine-tuning throughput: onnxprune's loop against a plain hand-written torch loop, same
imported module, same JPEG folder, same batch size, same augmentation work and the same
distillation (the original run on each batch as teacher), timed interleaved in one run.

    python benchmarks/throughput.py [--size 128] [--images 256] [--steps 6] [--repeats 3]

"plain" is what a user would write: a torch Dataset that opens, crops and normalizes each JPEG,
a shuffling DataLoader with the same workers, the teacher under no_grad, KL + cross-entropy,
Adam with a cosine schedule. "plain, no teacher" drops the teacher's forward pass. Without
augmentation ("no views") onnxprune may read the teacher's outputs from a memory-mapped cache
(``teacher.py``): both rows are timed. On a GPU (when
there is one) the CUDA rows time onnxprune's loop in fp32 and in bf16 autocast with channels-last.
Prints images/s per loop (median of the repeats) and the ratio; saves
benchmarks/results/throughput.txt (throughput_cuda.txt on a GPU).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from jpeg_folder import jpeg_folder  # noqa: E402
from table import Table  # noqa: E402
from torchvision_onnx import torchvision_onnx  # noqa: E402

from onnxprune.data.augment import AREA, ASPECT  # noqa: E402
from onnxprune.data.sources import IMAGENET_MEAN, IMAGENET_STD, load_data  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.torchview.finetune import TrainSettings, finetune  # noqa: E402
from onnxprune.torchview.loader import default_workers  # noqa: E402
from onnxprune.torchview.view import TorchView  # noqa: E402
from onnxprune.torchview.teacher import Teacher  # noqa: E402


class PlainImages(torch.utils.data.Dataset):
    """A hand-written image folder dataset with torchvision's transforms."""

    def __init__(self, files: list[Path], labels: list[int], size: int) -> None:
        from torchvision import transforms

        self.files, self.labels = files, labels
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=AREA, ratio=ASPECT), transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def plain_loop(student: torch.nn.Module, teacher: torch.nn.Module | None, loader, steps: int) -> int:
    student.eval()
    for m in student.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    images = 0
    batches = iter(loader)
    for _ in range(steps):
        x, y = next(batches)
        logits = student(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None:
            with torch.no_grad():
                target = teacher(x)
            loss = loss + F.kl_div(F.log_softmax(logits, 1), F.log_softmax(target, 1), log_target=True,
                                   reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        images += len(x)
    return images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128, help="model input H = W")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = jpeg_folder(Path(tmp) / "jpegs", args.images, size=args.size + args.size // 8)
        loaded = load(torchvision_onnx("resnet18", args.size))
        data = load_data(folder, loaded.image, labels="imagefolder")
        view = TorchView.of(loaded.model, loaded.image)
        teacher_view = TorchView.of(loaded.model, loaded.image, check=False)
        teacher = teacher_view.imported.module.eval().requires_grad_(False)
        files = [folder / n for n in data.names]
        plain_data = PlainImages(files, [int(v) for v in data.labels], args.size)

        cached = Teacher(loaded)
        cached.build_cache(loaded, data, tmp)

        def ours(device: str, precision: str, channels_last: bool, augment: str = "crop", from_cache=False):
            module = copy.deepcopy(view.imported.module)
            settings = TrainSettings(batch_size=args.batch, device=device, augment=augment,
                                     workers=args.workers, precision=precision, channels_last=channels_last)
            teacher.to(device)
            on_the_fly = lambda x, _positions: teacher_view.run(teacher, x)  # noqa: E731
            start = time.perf_counter()
            finetune(module, data, cached if from_cache else on_the_fly, args.steps, settings, view.run, 0)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return args.steps * args.batch / (time.perf_counter() - start)

        def plain(with_teacher: bool):
            module = copy.deepcopy(view.imported.module)
            loader = torch.utils.data.DataLoader(plain_data, batch_size=args.batch, shuffle=True,
                                                 num_workers=args.workers, drop_last=True)
            teacher.to("cpu")
            start = time.perf_counter()
            images = plain_loop(module, teacher if with_teacher else None, loader, args.steps)
            return images / (time.perf_counter() - start)

        loops = {"onnxprune": lambda: ours("cpu", "fp32", False), "plain": lambda: plain(True),
                 "plain, no teacher": lambda: plain(False),
                 "onnxprune, no views": lambda: ours("cpu", "fp32", False, "none"),
                 "onnxprune, no views, cached teacher": lambda: ours("cpu", "fp32", False, "none", True)}
        if torch.cuda.is_available():
            loops = {"onnxprune cuda fp32": lambda: ours("cuda", "fp32", False),
                     "onnxprune cuda bf16 channels-last": lambda: ours("cuda", "bf16", True)}
        rates: dict[str, list[float]] = {name: [] for name in loops}
        for name, loop in loops.items():  # warm-up: first DataLoader start, allocator, oneDNN kernels
            loop()
        for _ in range(args.repeats):
            for name, loop in loops.items():
                rates[name].append(loop())
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    name = "throughput_cuda.txt" if torch.cuda.is_available() else "throughput.txt"
    table = Table(name, f"# fine-tuning throughput: resnet18 {args.size}x{args.size}, batch {args.batch}, {args.steps} "
                        f"steps, {args.workers} DataLoader worker(s), {args.images} JPEGs, {device}, torch "
                        f"{torch.__version__}, interleaved, median of {args.repeats}",
                  f"{'loop':<36}{'images/s':>10}{'spread':>9}{'vs first':>10}")
    first = statistics.median(next(iter(rates.values())))
    for loop, values in rates.items():
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median
        table.add(f"{loop:<36}{median:>10.1f}{spread:>8.0%}{median / first:>10.2f}")
    if "plain" in rates:
        table.add(f"onnxprune / plain: {statistics.median(rates['onnxprune']) / statistics.median(rates['plain']):.2f}")
    table.save()

if __name__ == "__main__":
    main()
