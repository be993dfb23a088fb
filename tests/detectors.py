"""Detectors for tests and benchmarks, random weights, no download.

- ``yolov8``: Ultralytics' YOLOv8 built from its yaml (C2f blocks with Split and Concat, a
  decoupled head whose box branch goes through DFL, anchors and strides decoded in the graph).
- ``yolox_style``: a small network with YOLOX's head (Ge et al. 2021): per level a stem, then
  separate classification and regression branches, box, objectness and class predictions
  concatenated, flattened, and decoded against the grid in the graph. No package on PyPI builds
  YOLOX without compiling, so its head is written out here.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["DETECTORS", "build_detector", "export_detector"]

DETECTORS = ("yolov8n", "yolox_style")


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class YoloxStyle(nn.Module):
    """Backbone of strided convs, three levels (strides 8, 16, 32), YOLOX's decoupled head."""

    def __init__(self, classes: int = 20, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv(3, width // 2, stride=2), _conv(width // 2, width, stride=2))
        self.levels = nn.ModuleList([
            nn.Sequential(_conv(width, width * 2, stride=2), _conv(width * 2, width * 2)),
            nn.Sequential(_conv(width * 2, width * 4, stride=2), _conv(width * 4, width * 4)),
            nn.Sequential(_conv(width * 4, width * 8, stride=2), _conv(width * 8, width * 8)),
        ])
        self.strides = (8, 16, 32)
        hidden = width * 2
        self.heads = nn.ModuleList()
        for cin in (width * 2, width * 4, width * 8):
            self.heads.append(nn.ModuleDict({
                "stem": _conv(cin, hidden, k=1),
                "cls": nn.Sequential(_conv(hidden, hidden), _conv(hidden, hidden)),
                "reg": nn.Sequential(_conv(hidden, hidden), _conv(hidden, hidden)),
                "cls_pred": nn.Conv2d(hidden, classes, 1),
                "reg_pred": nn.Conv2d(hidden, 4, 1),
                "obj_pred": nn.Conv2d(hidden, 1, 1),
            }))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        outputs = []
        for level, head, stride in zip(self.levels, self.heads, self.strides):
            x = level(x)
            h = head["stem"](x)
            cls, reg = head["cls"](h), head["reg"](h)
            out = torch.cat([head["reg_pred"](reg), head["obj_pred"](reg).sigmoid(),
                             head["cls_pred"](cls).sigmoid()], 1)
            n, c, hh, ww = out.shape
            out = out.flatten(2).permute(0, 2, 1)  # (N, H·W, 5 + classes)
            ys, xs = torch.meshgrid(torch.arange(hh), torch.arange(ww), indexing="ij")
            grid = torch.stack((xs, ys), 2).reshape(1, -1, 2).to(out.dtype)
            xy = (out[..., :2] + grid) * stride
            wh = torch.exp(out[..., 2:4]) * stride
            outputs.append(torch.cat([xy, wh, out[..., 4:]], 2))
        return torch.cat(outputs, 1)


def build_detector(name: str, seed: int = 0) -> nn.Module:
    """A detector with seeded random weights and BatchNorm statistics that are not trivial."""
    torch.manual_seed(seed)
    if name == "yolov8n":
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
        for module in model.modules():
            if hasattr(module, "export"):
                module.export = True  # the head returns the decoded boxes only, as its ONNX export does
    elif name == "yolox_style":
        model = YoloxStyle()
    else:
        raise ValueError(name)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export_detector(model: nn.Module, path: Path, exporter: str = "torchscript", size: int = 128,
                    dynamic_batch: bool = False) -> Path:
    """Export as users do: each exporter's defaults (batch fixed at 1, BatchNorm folded), or with
    a dynamic batch."""
    example = torch.randn(1, 3, size, size)
    logging.getLogger("torch").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["images"], output_names=["output0"],
                              dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic_batch else None)
        elif exporter == "dynamo":
            shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["output0"], dynamic_shapes=shapes, verbose=False)
            program.save(str(path))
        else:
            raise ValueError(exporter)
    return path


def export_yolov8(path: Path, size: tuple[int, int], name: str = "yolov8n") -> Path:
    """A YOLOv8 through Ultralytics' own exporter at a fixed (height, width), batch 1, as a
    detector is shipped at its own resolution."""
    from ultralytics import YOLO

    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = Path(YOLO(f"{name}.yaml").export(format="onnx", imgsz=list(size), opset=17, verbose=False))
    written.replace(path)
    return path


def export_yolov8_dynamic(folder: Path, opset: int, simplify: bool, size: int = 64) -> Path:
    """YOLOv8n through Ultralytics' own exporter with ``dynamic=True``: symbolic batch, height
    and width, anchors and strides computed in the graph from ``Shape`` of the feature maps."""
    from ultralytics import YOLO

    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = Path(model.export(format="onnx", dynamic=True, simplify=simplify, opset=opset, imgsz=size,
                                    verbose=False))
    path = folder / f"yolov8n.dynamic.opset{opset}{'.simplified' if simplify else ''}.onnx"
    written.replace(path)
    return path
