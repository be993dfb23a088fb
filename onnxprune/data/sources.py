"""Calibration, training and validation inputs, read lazily: a data set of any size costs its
file list in memory, not its pixels.

An image folder (recursive) is listed once, headers only; each image is decoded when it is read:
resized so it covers the model's H×W (shorter side first) and centre-cropped, or cut to an
augmentation ``View``; scaled to [0, 1], normalized with mean/std, RGB unless ``bgr``, and laid out
as the model's input (NCHW or NHWC). An ``.npy`` file is memory-mapped; an ``.npz`` is read whole
(numpy cannot map it). Labels are read only when asked for. This module loads no torch: the
DataLoader that reads in worker processes is ``loader.py``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OnnxpruneError
from ..graph.image_input import ImageInput

__all__ = ["Preprocess", "View", "Dataset", "UnreadableImage", "ImageFiles", "Tensors", "Views", "Joined", "joined",
           "load_data", "split", "bounded",
           "IMAGE_SUFFIXES", "UNLABELLED", "check_labels", "check_source", "small_data_note"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
# the label of an image --labels FILE.csv leaves out: no index a user writes (a -1 written is refused)
UNLABELLED = int(np.iinfo(np.int64).min)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images become tensors; the defaults are ImageNet's."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    bgr: bool = False


@dataclass(frozen=True)
class View:
    """What augmentation makes of one image: a region (fractions of its height and width) resized
    to the model's H×W, mirrored or not, then rolled by (dy, dx) fractions (``augment.py`` draws it)."""

    top: float = 0.0
    left: float = 0.0
    height: float = 1.0
    width: float = 1.0
    flip: bool = False
    dy: float = 0.0
    dx: float = 0.0
    cover: bool = True  # the region is the centred crop that covers H×W, not the fractions above
    edge: bool = False  # a shift repeats the border row or column instead of wrapping the image round


CENTRE = View()


class UnreadableImage(OnnxpruneError):
    """A listed image whose header opened but whose pixels do not decode (a truncated file)."""


class ImageFiles:
    """Image files decoded on demand."""

    def __init__(self, root: Path, files: tuple[str, ...], image: ImageInput, prep: Preprocess) -> None:
        if image.channels not in (1, 3):
            raise OnnxpruneError(f"the model takes {image.channels}-channel images; pass tensors (.npy) instead")
        self.root, self.files, self.image, self.prep = root, files, image, prep
        self.mean = _per_channel(prep.mean, image.channels, "mean")
        self.std = _per_channel(prep.std, image.channels, "std")

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return self.files[i]

    def read(self, i: int, view: View = CENTRE) -> np.ndarray:
        from PIL import Image

        image, path = self.image, self.root / self.files[i]
        try:
            with Image.open(path) as opened:
                img = _cut(opened.convert("L" if image.channels == 1 else "RGB"), image.width, image.height, view)
                array = np.asarray(img, dtype=np.float32) / 255.0
        except Exception as err:  # PIL raises several kinds, and a library may patch Image.open
            raise UnreadableImage(f"--data: cannot decode {path} ({err}); remove or replace it") from err
        if array.ndim == 2:
            array = array[:, :, None]
        if image.channels == 3 and self.prep.bgr:
            array = array[:, :, ::-1]
        array = _roll((array - self.mean) / self.std, view, (0, 1))
        return np.ascontiguousarray(array if image.layout == "NHWC" else array.transpose(2, 0, 1))


def _cut(img, width: int, height: int, view: View):
    """The view's region of a PIL image at width × height."""
    from PIL import Image

    w, h = img.size
    if view.cover:
        scale = max(width / w, height / h)
        size = (max(width, round(w * scale)), max(height, round(h * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        img = img.crop((left, top, left + width, top + height))
    else:
        box = (view.left * w, view.top * h, (view.left + view.width) * w, (view.top + view.height) * h)
        img = img.resize((width, height), Image.Resampling.BILINEAR, box=box)
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if view.flip else img


def _roll(array: np.ndarray, view: View, hw: tuple[int, int]) -> np.ndarray:
    if not (view.dy or view.dx):
        return array
    shifts = (round(view.dy * array.shape[hw[0]]), round(view.dx * array.shape[hw[1]]))
    if not view.edge:
        return np.roll(array, shifts, axis=hw)
    # moved by the shift, the border repeated into what it uncovers: an input a camera could give
    pad = [(0, 0)] * array.ndim
    for axis, shift in zip(hw, shifts):
        pad[axis] = (max(shift, 0), max(-shift, 0))
    padded = np.pad(array, pad, mode="edge")
    index = [slice(None)] * array.ndim
    for axis, shift in zip(hw, shifts):
        index[axis] = slice(max(-shift, 0), max(-shift, 0) + array.shape[axis])
    return padded[tuple(index)]


class Tensors:
    """Ready model inputs: an array, memory-mapped when it comes from an .npy file."""

    def __init__(self, array: np.ndarray, image: ImageInput | None = None, label: str = "") -> None:
        self.array, self.label = array, label
        self.layout = image.layout if image else "NCHW"

    def __len__(self) -> int:
        return len(self.array)

    def name(self, i: int) -> str:
        return f"{self.label}[{i}]"

    def read(self, i: int, view: View = CENTRE) -> np.ndarray:
        x = np.asarray(self.array[i], dtype=np.float32)
        hw = (1, 2) if self.layout == "NCHW" else (0, 1)
        if not view.cover:
            x = _resize_region(x, view, hw)
        if view.flip:
            x = np.flip(x, hw[1])
        return np.ascontiguousarray(_roll(x, view, hw))


def _resize_region(x: np.ndarray, view: View, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the view's region back to the array's own H×W."""
    h, w = x.shape[hw[0]], x.shape[hw[1]]

    def coordinates(start: float, extent: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = (start + (np.arange(size) + 0.5) * extent / size) * size - 0.5
        at = np.clip(at, 0, size - 1)
        low = np.floor(at).astype(int)
        return low, np.minimum(low + 1, size - 1), (at - low).astype(np.float32)

    y0, y1, fy = coordinates(view.top, view.height, h)
    x0, x1, fx = coordinates(view.left, view.width, w)
    moved = np.moveaxis(x, hw, (0, 1))
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = moved[y0][:, x0] * (1 - fx) + moved[y0][:, x1] * fx
    bottom = moved[y1][:, x0] * (1 - fx) + moved[y1][:, x1] * fx
    return np.moveaxis(top * (1 - fy) + bottom * fy, (0, 1), hw).astype(np.float32)


class Views:
    """Other views of some items of a source: item ``k`` is item ``index[k]`` of ``source`` as
    ``views[k]`` shows it (the held-out images seen again, shifted, to judge on more inputs)."""

    def __init__(self, source: ImageFiles | Tensors, index: np.ndarray, views: list[View]) -> None:
        self.source, self.index, self.views = source, index, views

    def __len__(self) -> int:
        return len(self.index)

    def name(self, i: int) -> str:
        return f"{self.source.name(int(self.index[i]))}@{self.views[i].dy:+.3f},{self.views[i].dx:+.3f}"

    def read(self, i: int, view: View = CENTRE) -> np.ndarray:
        return self.source.read(int(self.index[i]), self.views[i])


class Joined:
    """Two data sets read as one: the items of ``first``, then those of ``extra`` (--unlabeled
    images after --data's training share)."""

    def __init__(self, first: Dataset, extra: Dataset) -> None:
        self.first, self.extra = first, extra

    def __len__(self) -> int:
        return len(self.first) + len(self.extra)

    def _part(self, i: int) -> tuple[Dataset, int]:
        return (self.first, i) if i < len(self.first) else (self.extra, i - len(self.first))

    def name(self, i: int) -> str:
        part, k = self._part(i)
        return part.source.name(int(part.index[k]))

    def read(self, i: int, view: View = CENTRE) -> np.ndarray:
        part, k = self._part(i)
        return part.read(k, view)


Source = ImageFiles | Tensors | Views | Joined


def _item_shape(source: Source) -> tuple[int, ...]:
    if isinstance(source, Views):
        return _item_shape(source.source)
    if isinstance(source, Joined):
        return _item_shape(source.first.source)
    return source.image.shape(1)[1:] if isinstance(source, ImageFiles) else source.array.shape[1:]


@dataclass(frozen=True)
class Dataset:
    """Some items of a source (files or an array), in order, with integer labels when asked for.

    Nothing is decoded until read: ``read``/``batch``/``batches`` decode on demand, ``inputs``
    decodes everything (small sets: tests, calibration).
    """

    source: Source
    index: np.ndarray  # positions in the source
    labels: np.ndarray | None = None  # aligned with ``index``
    classes: tuple[str, ...] | None = None

    @classmethod
    def of_array(cls, array: np.ndarray, labels: np.ndarray | None = None, image: ImageInput | None = None,
                 label: str = "array") -> Dataset:
        return cls(Tensors(array, image, label), np.arange(len(array)), labels)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.source.name(int(i)) for i in self.index)

    @property
    def item_bytes(self) -> int:
        """Bytes of one decoded input (float32), known without decoding one."""
        return 4 * int(np.prod(_item_shape(self.source)))

    @property
    def kind(self) -> str:
        if isinstance(self.source, Joined):
            return self.source.first.kind
        source = self.source.source if isinstance(self.source, Views) else self.source
        return "images" if isinstance(source, ImageFiles) else "tensors"

    def read(self, position: int, view: View = CENTRE) -> np.ndarray:
        return self.source.read(int(self.index[position]), view)

    def batch(self, positions) -> np.ndarray:
        return np.stack([self.read(int(p)) for p in positions])

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """All items in order, ``size`` at a time, decoded as they are reached."""
        for start in range(0, len(self), size):
            yield self.batch(range(start, min(start + size, len(self))))

    @property
    def inputs(self) -> np.ndarray:
        """Every item decoded into one array: for small sets only."""
        return self.batch(range(len(self)))

    def seen_as(self, positions, views: list[View]) -> Dataset:
        """Items ``positions`` each as its ``views`` entry shows it, as a data set of their own."""
        if isinstance(self.source, (Views, Joined)):
            raise ValueError("views are taken of the images of one source")
        positions = np.asarray(positions, dtype=np.int64)
        labels = None if self.labels is None else self.labels[positions]
        return Dataset(Views(self.source, self.index[positions], views), np.arange(len(positions)), labels, self.classes)

    def subset(self, positions) -> Dataset:
        positions = np.asarray(positions, dtype=np.int64)
        labels = None if self.labels is None else self.labels[positions]
        return Dataset(self.source, self.index[positions], labels, self.classes)


def joined(train: Dataset, unlabeled: Dataset) -> Dataset:
    """``train`` and then the ``unlabeled`` images as one training set: the original teaches both
    (distillation needs no label), and where ``train`` has labels those images are UNLABELLED."""
    if unlabeled.item_bytes != train.item_bytes:
        raise OnnxpruneError(f"--unlabeled holds inputs of {unlabeled.item_bytes // 4} values, --data of "
                             f"{train.item_bytes // 4}: give images (or tensors shaped) as the model takes them")
    labels = None if train.labels is None else np.r_[train.labels, np.full(len(unlabeled), UNLABELLED)]
    return Dataset(Joined(train, unlabeled), np.arange(len(train) + len(unlabeled)), labels, train.classes)


def _per_channel(values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
    if len(values) == 1:
        values = values * channels
    if channels == 1 and len(values) == 3:
        values = (float(np.mean(values)),)  # grayscale model, RGB statistics: use their mean
    if len(values) != channels:
        raise OnnxpruneError(f"--{what} has {len(values)} values but the model takes {channels} channels")
    return np.asarray(values, dtype=np.float32)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _readable(files: list[Path], image: ImageInput) -> tuple[list[Path], int, int]:
    """The files whose headers open (the pixels are decoded later), and how many are skipped or
    smaller than the model's input."""
    from PIL import Image

    good, skipped, small = [], 0, 0
    for path in files:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except Exception:
            skipped += 1
            continue
        good.append(path)
        small += w < image.width or h < image.height
    return good, skipped, small


def _folder_labels(folder: Path, files: list[Path]) -> tuple[np.ndarray, tuple[str, ...]]:
    """ImageFolder labels: class index of each file's top sub-folder (integer names keep their value)."""
    if any(len(p.relative_to(folder).parts) < 2 for p in files):
        raise OnnxpruneError(
            f"--labels imagefolder needs every image inside a class sub-folder of {folder}; "
            "some lie directly in it"
        )
    tops = [p.relative_to(folder).parts[0] for p in files]
    classes = sorted(set(tops), key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    if all(c.isdigit() for c in classes):
        return np.asarray([int(t) for t in tops], dtype=np.int64), tuple(classes)
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[t] for t in tops], dtype=np.int64), tuple(classes)


def _csv_labels(csv_path: Path, folder: Path, files: list[Path]) -> np.ndarray:
    _check_csv(csv_path)
    table: dict[str, int] = {}
    named: list[str] = []  # labels that are not class indices
    with csv_path.open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not row[1].strip():
                continue  # blank line
            if not row[1].strip().lstrip("-").isdigit():
                named.append(row[1].strip())  # a header, or a class given by name
                continue
            table[row[0].strip()] = int(row[1])
    if len(named) > 1 and not table:
        examples = ", ".join(repr(n) for n in sorted(set(named))[:3])
        raise OnnxpruneError(f"--labels {csv_path} names classes as strings ({examples}, …); give each image the "
                             "index of its class in the model's outputs (0, 1, …)")
    # An image the CSV leaves out is unlabelled (UNLABELLED): it is distilled from the original only.
    labels = [table.get(str(p.relative_to(folder)), table.get(p.name, UNLABELLED)) for p in files]
    if all(v == UNLABELLED for v in labels):
        raise OnnxpruneError(f"--labels {csv_path} labels none of the {len(files)} images in {folder}; its rows "
                             "must name them as 'file,label' (the path inside the folder, or the file's name)")
    return np.asarray(labels, dtype=np.int64)


SMALL_HELD_OUT = 100  # held-out items under which a run says what they can resolve


def small_data_note(train: int, held_out: int, max_drop: float) -> str | None:
    """One line on what ``held_out`` items can tell, when they are few: a point of accuracy per
    item, and the 95 % interval around a 90 % accuracy (Wilson's half-width, near enough)."""
    if held_out >= SMALL_HELD_OUT:
        return None
    if held_out == 0:
        return f"no held-out images: {train} train and nothing judges the pruned model; give more images or --val-data"
    half = 100 * 1.96 * (0.9 * 0.1 / held_out) ** 0.5
    need = int(np.ceil((1.96 / (max_drop / 100)) ** 2 * 0.09)) if max_drop > 0 else None
    note = (f"{held_out} held-out images judge the pruned model ({train} train): one image is "
            f"{100 / held_out:.1f} points and a 95 % interval on an accuracy near 90 % spans ±{half:.0f} points")
    if need and half > max_drop:
        note += f", wider than --max-drop {max_drop:g}; about {need} would resolve it (more images or --val-data)"
    return note


def check_labels(data: Dataset, sample_shape: tuple[int, ...], what: str) -> None:
    """Labels the model can be judged by: a classifier's first output (one score per class),
    and no class index outside it — refused before any work starts."""
    if data.labels is None or not len(data.labels):
        return
    if len(sample_shape) != 1 or sample_shape[0] < 2:
        raise OnnxpruneError(f"{what} gives class labels, but the model's first output is {sample_shape} per "
                             "image, not one score per class; leave out --labels to distil from the original")
    outputs = sample_shape[0]
    if data.classes is not None and len(data.classes) > outputs:
        raise OnnxpruneError(f"{what} has {len(data.classes)} class folders, but the model outputs {outputs} "
                             "classes; name the folders by the index of their class in the model's outputs")
    known = data.labels[data.labels != UNLABELLED]
    if not len(known):
        return
    low, high = int(known.min()), int(known.max())
    if low < 0 or high >= outputs:
        bad = low if low < 0 else high
        raise OnnxpruneError(f"{what} has class index {bad}, but the model outputs {outputs} classes (0 to "
                             f"{outputs - 1}); label each image with the index of its class in the model's outputs")


def _load_tensors(path: Path, image: ImageInput) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # pages come in as they are read
        else:
            loaded = np.load(path, allow_pickle=False)
            keys = list(loaded.keys())
            if not keys:
                raise OnnxpruneError(f"{path} holds no arrays")
            array = loaded[image.name] if image.name in keys else loaded[keys[0]]
    except OnnxpruneError:
        raise
    except Exception as err:
        raise OnnxpruneError(f"{path} is not a readable .npy/.npz file ({err})") from err
    expected = image.shape(1)[1:]
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise OnnxpruneError(
            f"{path} holds an array of shape {tuple(array.shape)}; the model needs (N, "
            f"{', '.join(map(str, expected))})"
        )
    if len(array) == 0:
        raise OnnxpruneError(f"{path} holds no samples")
    if not np.issubdtype(array.dtype, np.number):
        raise OnnxpruneError(f"{path} holds {array.dtype} values; give numbers")
    return array


def check_source(source: str | Path, labels: str | None = None, flag: str = "--data") -> Path:
    """``source`` as a Path, refused unless it is a folder or an .npy/.npz file, and ``labels``
    unless it is 'imagefolder' beside a folder or an existing CSV; reads no image."""
    path = Path(source)
    if not path.exists():
        raise OnnxpruneError(f"{flag} {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in (".npy", ".npz"):
            raise OnnxpruneError(f"{flag} {path}: give a folder of images or an .npy/.npz file")
        if labels:
            raise OnnxpruneError(f"--labels needs an image folder as {flag}")
    elif labels and labels != "imagefolder":
        _check_csv(Path(labels))
    return path


def _check_csv(csv_path: Path) -> None:
    if not csv_path.is_file():
        raise OnnxpruneError(f"--labels {csv_path}: no such file; give a CSV of 'file,label' rows")


def load_data(
    source: str | Path, image: ImageInput, prep: Preprocess = Preprocess(), labels: str | None = None,
    flag: str = "--data",
) -> Dataset:
    """List ``--data`` (or the option ``flag`` names): a folder of images (recursive) or an .npy/.npz
    of ready tensors."""
    path = check_source(source, labels, flag)
    if path.is_file():
        array = _load_tensors(path, image)
        return Dataset(Tensors(array, image, path.name), np.arange(len(array)))
    files = _image_files(path)
    if not files:
        raise OnnxpruneError(f"{flag} {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    good, skipped, small = _readable(files, image)
    if skipped:
        log.warning("skipped %d unreadable image file(s) in %s", skipped, path)
    if small:
        log.warning("%d image(s) are smaller than the model input %d×%d and are upscaled",
                    small, image.height, image.width)
    if not good:
        raise OnnxpruneError(f"{flag} {path}: none of its {len(files)} image files could be read")
    label_array, classes = None, None
    if labels == "imagefolder":
        label_array, classes = _folder_labels(path, good)
    elif labels:
        label_array = _csv_labels(Path(labels), path, good)
    names = tuple(str(p.relative_to(path)) for p in good)
    return Dataset(ImageFiles(path, names, image, prep), np.arange(len(good)), label_array, classes)


MIN_HELD_OUT = 16


def split(data: Dataset, val_fraction: float, seed: int, max_val: int | None = None) -> tuple[Dataset, Dataset]:
    """A seeded (train, validation) split; validation is never trained or scored on. At least
    ``MIN_HELD_OUT`` items (a third of a smaller set), at most ``max_val`` are held out: a bounded
    validation set, the rest trains."""
    if not 0 < val_fraction < 1:
        raise OnnxpruneError(f"--val-split must be in (0, 1), got {val_fraction}")
    n = len(data)
    # a few images cannot judge: hold out at least MIN_HELD_OUT, or a third of a smaller set
    n_val = max(1, round(n * val_fraction), min(MIN_HELD_OUT, n // 3))
    if max_val is not None:
        n_val = min(n_val, max_val)
    if n - n_val < 1:
        raise OnnxpruneError(f"--data has {n} sample(s); give at least 2 so some can be held out")
    order = np.random.default_rng(seed).permutation(n)
    # training keeps the shuffled order: its first items calibrate (scores, BatchNorm
    # statistics), and a folder read class by class would calibrate on the first classes only
    return data.subset(order[n_val:]), data.subset(np.sort(order[:n_val]))


def bounded(data: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` items, a seeded sample kept in order (a separate --val-data)."""
    if limit is None or len(data) <= limit:
        return data
    return data.subset(np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False)))
