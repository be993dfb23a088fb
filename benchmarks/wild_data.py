"""Images for the development set (benchmarks/wild.py), made offline in the form each model's
package feeds its model: document pages, text lines, rotated pages, face crops, captchas, photos.

Text uses the DejaVu fonts matplotlib ships; faces and photos come from matplotlib's own sample
images (Grace Hopper's portrait and the others in mpl-data/sample_data), cut, scaled, shifted and
recoloured, so no file is downloaded. Every maker is seeded: the same call makes the same images.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["MAKERS", "make_images"]

FONTS = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"
SAMPLES = Path(__import__("matplotlib").get_data_path()) / "sample_data"
WORDS = ("model pruning layer channel image table figure result method data value network output input "
         "weight bias score train test page text line section report average total sample number").split()
CAPTCHA = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _font(rng: random.Random, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    names = ["DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf"] if bold else \
        ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"]
    return ImageFont.truetype(str(FONTS / rng.choice(names)), size)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def page(rng: random.Random, height: int, width: int) -> Image.Image:
    """A document page: a title, paragraphs, a table with a caption, a figure with a caption,
    a header and a footer, at random places (the layout detector's ten classes draw on these)."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    margin = width // 12
    y = height // 30
    draw.text((margin, y), _sentence(rng, 4), fill=(90, 90, 90), font=_font(rng, max(8, height // 70)))
    y += height // 18
    draw.text((margin, y), _sentence(rng, rng.randint(3, 6)).title(), fill=(0, 0, 0),
              font=_font(rng, max(12, height // 28), bold=True))
    y += height // 12
    while y < height * 0.88:
        kind = rng.choice(["text", "text", "table", "figure"])
        if kind == "text":
            size = max(8, height // rng.randint(55, 75))
            for _ in range(rng.randint(3, 8)):
                draw.text((margin, y), _sentence(rng, rng.randint(6, 11)), fill=(0, 0, 0), font=_font(rng, size))
                y += int(size * 1.5)
            y += size
        elif kind == "table":
            rows, cols = rng.randint(3, 6), rng.randint(2, 5)
            w, h = int((width - 2 * margin) * rng.uniform(0.6, 1.0)), rows * height // 40
            if y + h > height * 0.88:
                break
            for r in range(rows + 1):
                draw.line([(margin, y + r * h // rows), (margin + w, y + r * h // rows)], fill=(0, 0, 0), width=1)
            for c in range(cols + 1):
                draw.line([(margin + c * w // cols, y), (margin + c * w // cols, y + h)], fill=(0, 0, 0), width=1)
            size = max(7, h // rows // 2)
            for r in range(rows):
                for c in range(cols):
                    draw.text((margin + c * w // cols + 3, y + r * h // rows + 2), rng.choice(WORDS)[:6],
                              fill=(0, 0, 0), font=_font(rng, size))
            y += h + 6
            draw.text((margin, y), "Table " + str(rng.randint(1, 9)) + ": " + _sentence(rng, 5), fill=(0, 0, 0),
                      font=_font(rng, max(8, height // 75)))
            y += height // 25
        else:
            w, h = int((width - 2 * margin) * rng.uniform(0.4, 0.8)), int(height * rng.uniform(0.12, 0.22))
            if y + h > height * 0.88:
                break
            draw.rectangle([margin, y, margin + w, y + h], outline=(0, 0, 0))
            points = [(margin + i * w // 20, y + h - int(h * (0.1 + 0.8 * rng.random()))) for i in range(21)]
            draw.line(points, fill=(rng.randint(0, 200), rng.randint(0, 200), 255), width=2)
            y += h + 6
            draw.text((margin, y), "Figure " + str(rng.randint(1, 9)) + ". " + _sentence(rng, 6), fill=(0, 0, 0),
                      font=_font(rng, max(8, height // 75)))
            y += height // 25
    draw.text((width // 2, int(height * 0.95)), str(rng.randint(1, 300)), fill=(60, 60, 60),
              font=_font(rng, max(8, height // 70)))
    return img


def text_line(rng: random.Random, height: int, width: int, flip: bool = False) -> Image.Image:
    """One line of words or digits on a light background, a little blurred; turned half a turn
    when ``flip`` (what a direction classifier tells apart)."""
    size = int(height * rng.uniform(0.55, 0.75))
    text = _sentence(rng, rng.randint(1, 4)) if rng.random() < 0.7 else str(rng.randint(10, 10 ** 7))
    font = _font(rng, size)
    shade = rng.randint(225, 255)
    img = Image.new("RGB", (width, height), (shade, shade, shade - rng.randint(0, 20)))
    ImageDraw.Draw(img).text((rng.randint(2, 10), (height - size) // 2 - 2), text, fill=(rng.randint(0, 60),) * 3,
                             font=font)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    return img.rotate(180) if flip else img


def rotated_page(rng: random.Random, height: int, width: int) -> Image.Image:
    turns = rng.randint(0, 3)
    return page(rng, 800, 608).rotate(90 * turns, expand=True).resize((width, height), Image.BILINEAR)


def _portrait() -> Image.Image:
    return Image.open(SAMPLES / "grace_hopper.jpg").convert("RGB")


def face(rng: random.Random, height: int, width: int) -> Image.Image:
    """A crop around Grace Hopper's face (scaled, shifted, recoloured), or, one time in three, a
    crop of the background: an MTCNN stage's input. Transposed, as mtcnn's code feeds its nets."""
    img = _portrait()
    w, h = img.size
    if rng.random() < 2 / 3:
        cx, cy, side = w * 0.49, h * 0.38, w * 0.42  # the face, roughly
        side *= rng.uniform(0.8, 1.25)
        cx += side * rng.uniform(-0.12, 0.12)
        cy += side * rng.uniform(-0.12, 0.12)
    else:
        side = w * rng.uniform(0.15, 0.35)
        cx, cy = rng.uniform(side / 2, w - side / 2), rng.uniform(h * 0.7, h - side / 2)
    crop = img.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
    crop = crop.resize((width, height), Image.BILINEAR)
    array = np.asarray(crop, np.float32) * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).transpose(Image.TRANSPOSE)


def captcha(rng: random.Random, height: int, width: int) -> Image.Image:
    """Four to six letters and digits, each turned and coloured, over noise lines."""
    img = Image.new("RGB", (width, height), tuple(rng.randint(200, 255) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 5)):
        draw.line([(rng.randint(0, width), rng.randint(0, height)) for _ in range(2)],
                  fill=tuple(rng.randint(60, 200) for _ in range(3)), width=rng.randint(1, 2))
    chars = rng.randint(4, 6)
    for i in range(chars):
        glyph = Image.new("RGBA", (height, height), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((8, 4), rng.choice(CAPTCHA), font=_font(rng, int(height * 0.6), rng.random() < .5),
                                   fill=tuple(rng.randint(0, 120) for _ in range(3)) + (255,))
        glyph = glyph.rotate(rng.uniform(-25, 25))
        img.paste(glyph, (int(4 + i * (width - 10) / chars), rng.randint(-4, 4)), glyph)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))


def photo(rng: random.Random, height: int, width: int) -> Image.Image:
    """A scene cut from matplotlib's sample photos: the portrait at another scale and place, pasted
    over a crop of another sample."""
    backgrounds = [p for p in SAMPLES.glob("*.jpg")] + [p for p in SAMPLES.glob("*.png")]
    back = Image.open(rng.choice(backgrounds)).convert("RGB").resize((width, height), Image.BILINEAR)
    person = _portrait()
    scale = rng.uniform(0.35, 1.0)
    person = person.resize((int(width * scale), int(height * scale * person.size[1] / person.size[0])),
                           Image.BILINEAR)
    if rng.random() < 0.5:
        person = person.transpose(Image.FLIP_LEFT_RIGHT)
    back.paste(person, (rng.randint(-width // 4, width // 2), rng.randint(-height // 8, height // 2)))
    return back


def char_scene(rng: random.Random, height: int, width: int) -> Image.Image:
    """Letters and Chinese-free symbols scattered over a textured background: what a click-captcha
    character detector looks at."""
    noise = np.random.default_rng(rng.randint(0, 2 ** 31)).integers(150, 255, (height // 8, width // 8, 3))
    img = Image.fromarray(noise.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    for _ in range(rng.randint(3, 6)):
        size = rng.randint(height // 10, height // 5)
        glyph = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((size // 2, size // 3), rng.choice(CAPTCHA), font=_font(rng, size, True),
                                   fill=tuple(rng.randint(0, 90) for _ in range(3)) + (255,))
        glyph = glyph.rotate(rng.uniform(-40, 40))
        img.paste(glyph, (rng.randint(0, width - 2 * size), rng.randint(0, height - 2 * size)), glyph)
    return img


MAKERS = {"page": page, "line": text_line, "flipped-line": lambda r, h, w: text_line(r, h, w, r.random() < 0.5),
          "rotated-page": rotated_page, "face": face, "captcha": captcha, "photo": photo, "char-scene": char_scene}


def make_images(kind: str, folder: Path, count: int, height: int, width: int, seed: int) -> Path:
    """``count`` images of ``kind`` as PNG files in ``folder`` (made once; kept between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.png"))) == count:
        return folder
    rng = random.Random(seed)
    for i in range(count):
        MAKERS[kind](rng, height, width).save(folder / f"{i:04d}.png")
    return folder
