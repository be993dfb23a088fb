"""The model zoo the tests and benchmarks run on: torchvision CNNs built with random weights.

No weights are downloaded (``weights=None``); the graphs are what matters for import,
counting and slicing. Exports are cached per process in a directory the caller owns.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import torchvision

__all__ = ["ZOO", "EXPORTERS", "TESTED", "build_torch_model", "export_onnx", "onnx_tool_macs"]

# name -> constructor keyword arguments (all random init, no download)
ZOO: dict[str, dict] = {
    "resnet18": {},
    "resnet50": {},
    "mobilenet_v2": {},
    "mobilenet_v3_small": {},
    "efficientnet_b0": {},
    "densenet121": {},
    "shufflenet_v2_x0_5": {},
    "regnet_x_400mf": {},
    "convnext_tiny": {},
    "squeezenet1_1": {},
    "googlenet": {"aux_logits": False, "init_weights": True},
    "lraspp_mobilenet_v3_large": {"weights_backbone": None},
}

EXPORTERS = ("torchscript", "dynamo")

# The slow tests meet each structure once, exported both ways where the exporters differ;
# benchmarks/zoo_table.py and benchmarks/exports.py run the whole zoo.
# (name, exporter, dynamic batch): the one dynamo export is MobileNetV3's default (batch 1, BN
# folded); a dynamo export costs seconds, and the dynamo graph forms are all in it.
TESTED = [
    ("resnet18", "torchscript", True),  # residual Adds
    ("mobilenet_v3_small", "torchscript", True),  # depthwise convs, squeeze-excite, hardswish
    ("mobilenet_v3_small", "dynamo", False),
    ("shufflenet_v2_x0_5", "torchscript", True),  # channel shuffle and Split: blocked groups
    ("squeezenet1_1", "torchscript", True),  # Concat of two branches
    ("lraspp_mobilenet_v3_large", "torchscript", True),  # a segmenter: Resize, two heads
]


def build_torch_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A torchvision model with seeded random weights and BN statistics that are not trivial."""
    torch.manual_seed(seed)
    kwargs = dict(ZOO[name])
    if name.startswith("lraspp"):
        model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, **kwargs)
    else:
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    # Random running statistics, so BN folding and BN slicing are actually exercised.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
    return model.eval()


class _OutOnly(torch.nn.Module):
    """Segmentation models return a dict; export only its 'out' tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else out


def export_onnx(
    model: torch.nn.Module, path: Path, exporter: str, size: int = 64, dynamic_batch: bool = True
) -> Path:
    """Export with the TorchScript exporter (opset 17) or the dynamo one (its default opset).

    Both fold BatchNorm into the convs (the TorchScript one through its default constant
    folding); ``dynamic_batch=False`` is each exporter's default: the batch fixed at 1.
    """
    model = _OutOnly(model).eval()
    example = torch.randn(1, 3, size, size)
    logging.getLogger("torch").setLevel(logging.CRITICAL)  # a failed dynamic-batch try logs pages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None,
            )
        elif exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=1024)
            attempts = [({0: batch},), None] if dynamic_batch else [None]
            for shapes in attempts:  # some models (convnext) only export with a static batch
                try:
                    program = torch.onnx.export(
                        model,
                        (example,),
                        dynamo=True,
                        input_names=["input"],
                        output_names=["output"],
                        dynamic_shapes=shapes,
                        verbose=False,
                    )
                    break
                except Exception:
                    if shapes is None:
                        raise
            program.save(str(path))
        else:
            raise ValueError(exporter)
    return path


def onnx_tool_macs(loaded) -> int:
    """MACs of Conv/ConvTranspose/Gemm/MatMul by the independent onnx-tool profiler."""
    import numpy as np
    import onnx_tool

    from onnxprune.graph.ops import Cost, rule

    model = onnx_tool.Model(loaded.model)
    model.graph.shape_infer({loaded.image.name: np.zeros(loaded.image.shape(1), np.float32)})
    model.graph.profile()
    nodes = model.graph.nodemap
    return int(sum(nodes[n].macs[0] for n in nodes if rule(nodes[n].op_type).cost is Cost.MACS))
