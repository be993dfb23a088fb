"""Calibration and validation inputs: an image folder or ready tensors, shaped for the model.

Images are found recursively, resized so they cover the model's H×W (shorter side first),
centre-cropped, scaled to [0, 1], normalized with mean/std, RGB unless ``bgr``, and laid out as
the model's input (NCHW or NHWC). Labels are read only when asked for.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import OnnxpruneError
from .image_input import ImageInput

__all__ = ["Preprocess", "Dataset", "load_data", "split", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images become tensors; the defaults are ImageNet's."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    bgr: bool = False


@dataclass(frozen=True)
class Dataset:
    """Model-ready inputs (float32, the model's layout) and, when asked for, integer labels."""

    inputs: np.ndarray
    labels: np.ndarray | None
    names: tuple[str, ...]
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, index: np.ndarray) -> Dataset:
        labels = None if self.labels is None else self.labels[index]
        return Dataset(self.inputs[index], labels, tuple(self.names[i] for i in index), self.classes)


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
    if len(values) == 1:
        values = values * channels
    if channels == 1 and len(values) == 3:
        values = (float(np.mean(values)),)  # grayscale model, RGB statistics: use their mean
    if len(values) != channels:
        raise OnnxpruneError(f"--{what} has {len(values)} values but the model takes {channels} channels")
    return np.asarray(values, dtype=np.float32)


def _is_small(path: Path, image: ImageInput) -> bool:
    from PIL import Image

    with Image.open(path) as img:
        return img.size[0] < image.width or img.size[1] < image.height


def _read_image(path: Path, image: ImageInput, prep: Preprocess) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L" if image.channels == 1 else "RGB")
        w, h = img.size
        scale = max(image.width / w, image.height / h)
        size = (max(image.width, round(w * scale)), max(image.height, round(h * scale)))
        img = img.resize(size, Image.BILINEAR)
        left, top = (size[0] - image.width) // 2, (size[1] - image.height) // 2
        img = img.crop((left, top, left + image.width, top + image.height))
        array = np.asarray(img, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    if image.channels == 3 and prep.bgr:
        array = array[:, :, ::-1]
    if image.channels not in (1, 3):
        raise OnnxpruneError(f"the model takes {image.channels}-channel images; pass tensors (.npy) instead")
    mean = _per_channel(prep.mean, image.channels, "mean")
    std = _per_channel(prep.std, image.channels, "std")
    array = (array - mean) / std
    return array if image.layout == "NHWC" else array.transpose(2, 0, 1)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_labels(folder: Path, files: list[Path]) -> tuple[np.ndarray, tuple[str, ...]]:
    """ImageFolder labels: class index of each file's top sub-folder (integer names keep their value)."""
    tops = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in files]
    if any(t is None for t in tops):
        raise OnnxpruneError(
            f"--labels imagefolder needs every image inside a class sub-folder of {folder}; "
            "some lie directly in it"
        )
    classes = sorted(set(tops), key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    if all(c.isdigit() for c in classes):
        return np.asarray([int(t) for t in tops], dtype=np.int64), tuple(classes)
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[t] for t in tops], dtype=np.int64), tuple(classes)


def _csv_labels(csv_path: Path, folder: Path, files: list[Path]) -> np.ndarray:
    if not csv_path.is_file():
        raise OnnxpruneError(f"--labels {csv_path}: no such file; give a CSV of 'file,label' rows")
    table: dict[str, int] = {}
    with csv_path.open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not row[1].strip().lstrip("-").isdigit():
                continue  # header or blank line
            table[row[0].strip()] = int(row[1])
    labels = []
    for p in files:
        key = str(p.relative_to(folder))
        value = table.get(key, table.get(p.name))
        if value is None:
            raise OnnxpruneError(f"--labels {csv_path} has no label for {key}; label every image")
        labels.append(value)
    return np.asarray(labels, dtype=np.int64)


def _load_tensors(path: Path, image: ImageInput) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:
        raise OnnxpruneError(f"{path} is not a readable .npy/.npz file ({err})") from err
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        if not keys:
            raise OnnxpruneError(f"{path} holds no arrays")
        array = loaded[image.name] if image.name in keys else loaded[keys[0]]
    else:
        array = loaded
    expected = image.shape(1)[1:]
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise OnnxpruneError(
            f"{path} holds an array of shape {tuple(array.shape)}; the model needs (N, "
            f"{', '.join(map(str, expected))})"
        )
    if len(array) == 0:
        raise OnnxpruneError(f"{path} holds no samples")
    return np.ascontiguousarray(array, dtype=np.float32)


def load_data(
    source: str | Path, image: ImageInput, prep: Preprocess = Preprocess(), labels: str | None = None
) -> Dataset:
    """Read ``--data``: a folder of images (recursive) or an .npy/.npz of ready tensors."""
    path = Path(source)
    if not path.exists():
        raise OnnxpruneError(f"--data {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in (".npy", ".npz"):
            raise OnnxpruneError(f"--data {path}: give a folder of images or an .npy/.npz file")
        if labels:
            raise OnnxpruneError("--labels needs an image folder as --data")
        inputs = _load_tensors(path, image)
        return Dataset(inputs, None, tuple(f"{path.name}[{i}]" for i in range(len(inputs))))
    files = _image_files(path)
    if not files:
        raise OnnxpruneError(f"--data {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    arrays, good, skipped, small = [], [], 0, 0
    for file in files:
        try:
            arrays.append(_read_image(file, image, prep))
            good.append(file)
            small += _is_small(file, image)
        except OnnxpruneError:
            raise
        except Exception:
            skipped += 1
    if skipped:
        log.warning("skipped %d unreadable image file(s) in %s", skipped, path)
    if small:
        log.warning("%d image(s) are smaller than the model input %d×%d and were upscaled",
                    small, image.height, image.width)
    if not arrays:
        raise OnnxpruneError(f"--data {path}: none of its {len(files)} image files could be read")
    label_array, classes = None, None
    if labels == "imagefolder":
        label_array, classes = _folder_labels(path, good)
    elif labels:
        label_array = _csv_labels(Path(labels), path, good)
    names = tuple(str(p.relative_to(path)) for p in good)
    return Dataset(np.stack(arrays).astype(np.float32), label_array, names, classes)


def split(data: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded (train, validation) split; validation is never trained or scored on."""
    if not 0 < val_fraction < 1:
        raise OnnxpruneError(f"--val-split must be in (0, 1), got {val_fraction}")
    n = len(data)
    n_val = max(1, round(n * val_fraction))
    if n - n_val < 1:
        raise OnnxpruneError(f"--data has {n} sample(s); give at least 2 so some can be held out")
    order = np.random.default_rng(seed).permutation(n)
    # training keeps the shuffled order: its first batches calibrate (scores, BatchNorm
    # statistics), and a folder read class by class would calibrate on the first classes only
    return data.subset(order[n_val:]), data.subset(np.sort(order[:n_val]))
