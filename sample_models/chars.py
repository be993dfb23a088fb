"""The harder sample task: printed characters rendered offline in every font matplotlib ships.

47 classes (digits, capitals, and the eleven lower-case letters whose shape differs from their
capital: EMNIST's balanced set), each glyph drawn in one of 21 fonts, then distorted the way a
photographed label is: an affine warp (rotation, shear, scale, shift), colour and contrast of
ink and paper, clutter (a neighbouring glyph cut off at the edge, a stroke), blur and noise.
Nothing is downloaded and nothing is committed: the same seed draws the same images on any
machine with the same Pillow.

    python sample_models/chars.py DIR [--per-class 20] [--seed 1]   # PNG folders, class = sub-folder

Seeds: the shipped models trained on seed 0; seed 1 is what tests and benchmarks prune with;
seed 2 and above are fresh images no decision saw.
"""

from __future__ import annotations

import argparse
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 32
CLASSES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
_CANVAS = 64  # drawn at twice the size, warped, then reduced: smooth edges at 32×32


@lru_cache(maxsize=None)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _glyph_mask(char: str, font: str, rng: np.random.Generator, neighbours: bool) -> Image.Image:
    """The glyph (and perhaps cut-off neighbours) as an 8-bit ink mask on the large canvas, with
    the glyph's box centred so upper and lower case keep their relative height."""
    mask = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    face = _font(font, 48)
    # Anchor at the baseline's middle: a lower-case glyph sits lower and is shorter than a capital.
    draw.text((_CANVAS / 2, _CANVAS * 0.78), char, fill=255, font=face, anchor="ms")
    if neighbours:
        for side in (-1, 1):
            if rng.random() < 0.5:
                other = CLASSES[rng.integers(len(CLASSES))]
                draw.text((_CANVAS / 2 + side * rng.uniform(40, 48), _CANVAS * 0.78), other, fill=255,
                          font=face, anchor="ms")
    if rng.random() < 0.3:  # a stray stroke: a rule line or a scratch
        y = rng.uniform(0, _CANVAS)
        draw.line([(0, y), (_CANVAS, y + rng.uniform(-12, 12))], fill=255, width=int(rng.integers(1, 4)))
    return mask


def _warp(mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = np.deg2rad(rng.uniform(-15, 15))
    shear = rng.uniform(-0.25, 0.25)
    scale = rng.uniform(0.85, 1.15)
    shift = rng.uniform(-5, 5, 2)
    # Inverse map (output → input) about the centre, as Image.transform expects.
    c, s = np.cos(angle), np.sin(angle)
    forward = scale * np.array([[c, -s], [s, c]]) @ np.array([[1, shear], [0, 1]])
    inverse = np.linalg.inv(forward)
    centre = np.array([_CANVAS / 2, _CANVAS / 2])
    offset = centre - inverse @ (centre + shift)
    coeffs = (*inverse[0], offset[0], *inverse[1], offset[1])
    return mask.transform(mask.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)


def render(char_index: int, rng: np.random.Generator) -> np.ndarray:
    """One distorted image of class ``char_index``: (32, 32, 3) uint8."""
    font = FONT_FILES[rng.integers(len(FONT_FILES))]
    mask = _warp(_glyph_mask(CLASSES[char_index], font, rng, neighbours=rng.random() < 0.5), rng)
    mask = mask.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    if rng.random() < 0.4:
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    ink = np.asarray(mask, np.float32)[..., None] / 255.0
    paper = rng.uniform(0, 1, 3)
    # Ink differs from paper by at least 0.4 in brightness: legible, but not always black on white.
    brightness = paper.mean()
    target = brightness - rng.uniform(0.4, 0.9) if brightness > 0.5 else brightness + rng.uniform(0.4, 0.9)
    ink_colour = np.clip(paper + (np.clip(target, 0, 1) - brightness) + rng.normal(0, 0.1, 3), 0, 1)
    # Paper with a smooth shading gradient, as under uneven light.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5
    gradient = (rng.normal(0, 0.15) * xx + rng.normal(0, 0.15) * yy)[..., None]
    image = (paper + gradient) * (1 - ink) + ink_colour * ink
    image = image + rng.normal(0, rng.uniform(0.0, 0.08), image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def render_set(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,)) with ``per_class`` images of every class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    rng.shuffle(labels)
    images = np.stack([render(int(c), rng) for c in labels])
    return images, labels


def folder_name(label: int) -> str:
    """Sub-folder of a class: its index, then the character ("36_a"). Sorted, the folders are in
    the model's class order, and 'a' and 'A' stay apart on case-insensitive filesystems."""
    return f"{label:02d}_{CLASSES[label]}"


def write_folder(folder: Path, per_class: int, seed: int) -> Path:
    """Rendered images as PNG files, one sub-folder per class (``--labels imagefolder``)."""
    images, labels = render_set(per_class, seed)
    if folder.exists():
        shutil.rmtree(folder)
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / folder_name(int(label))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "RGB").save(target / f"{i:05d}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write_folder(args.folder, args.per_class, args.seed)
    print(f"wrote {args.per_class * len(CLASSES)} images to {args.folder}")


if __name__ == "__main__":
    main()
