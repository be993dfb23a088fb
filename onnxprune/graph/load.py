"""Read an ONNX file, refuse what is not a float CNN, and normalize the graph.

Normalization folds constants and Identity nodes with onnxslim but keeps BatchNormalization
(Conv+BN fusion is skipped) so fine-tuning sees it and the rewrite mirrors the original.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
from onnx import TensorProto

from ..errors import OnnxpruneError, first_line
from .free_batch import BATCH_NAME, free_batch
from .files import check_model_file
from .image_input import ImageInput
from .output_axes import BatchAxis, put_batch_first
from .runtime import fixed_at_one

__all__ = [
    "FreeInputSize",
    "LoadedModel", "ImageInput", "load", "read_model", "normalize", "graph_inputs",
    "unshare_initializers", "name_nodes",
]

log = logging.getLogger(__name__)

_QUANTIZED_OPS = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger",
    "MatMulInteger", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm",
}
_CONV_OPS = {"Conv", "ConvTranspose"}


class FreeInputSize(OnnxpruneError):
    """The image input's height or width is free in the file (``spatial``: the fixed ones, else None)."""

    def __init__(self, message: str, spatial: tuple[int | None, ...]) -> None:
        super().__init__(message)
        self.spatial = spatial


@dataclass(frozen=True)
class LoadedModel:
    """A normalized model that passed the checks, with its image input resolved."""

    model: onnx.ModelProto
    image: ImageInput
    source: Path | None
    external_data: bool = False  # the file kept its weights in external data files
    fixed_batch: int | None = None  # the batch the file fixed (freed in ``model``; see free_batch.py)
    signature: tuple[onnx.ValueInfoProto, ...] = ()  # the file's inputs and outputs, as written
    output_axes: tuple[BatchAxis, ...] = ()  # where each output had its batch (first in ``model``)


def read_model(path: str | Path) -> onnx.ModelProto:
    """Load an .onnx file (external data too) and run the full ONNX checker on it."""
    path = check_model_file(path)
    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as err:
        raise OnnxpruneError(
            f"{path} is not a readable ONNX model ({first_line(err)}); check that the file is "
            "complete and that its external data files sit beside it"
        ) from err
    if not model.graph.node:
        raise OnnxpruneError(f"{path} holds no ONNX graph (is it an ONNX file?)")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:
        raise OnnxpruneError(f"{path} fails the ONNX checker: {first_line(err)}") from err
    return model


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs, not initializers listed as inputs (IR < 4 exporters do that)."""
    inits = {init.name for init in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _refuse_unsupported(model: onnx.ModelProto, name: str) -> None:
    ops = {node.op_type for node in model.graph.node}
    quantized = sorted(ops & _QUANTIZED_OPS)
    if quantized:
        raise OnnxpruneError(
            f"{name} is a quantized model ({', '.join(quantized)}); prune the float model, then quantize"
        )
    if not ops & _CONV_OPS:
        raise OnnxpruneError(
            f"{name} has no Conv or ConvTranspose node; onnxprune prunes convolutional networks"
        )
    for node in model.graph.node:
        if node.domain == "ai.onnx.preview.training":
            raise OnnxpruneError(f"{name} is a training graph ({node.op_type}); export it for inference")
        if node.op_type == "BatchNormalization":
            training = any(a.name == "training_mode" and a.i for a in node.attribute)
            if training or len([o for o in node.output if o]) > 1:
                raise OnnxpruneError(
                    f"{name} was exported in training mode (BatchNormalization {node.name!r} updates "
                    "its statistics); export it with model.eval()"
                )
    float_types = {TensorProto.FLOAT}
    for init in model.graph.initializer:
        if init.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE):
            raise OnnxpruneError(
                f"{name} stores weights as {TensorProto.DataType.Name(init.data_type)} "
                f"(initializer {init.name!r}); onnxprune needs float32 weights — convert the model first"
            )
    del float_types


def _image_input(model: onnx.ModelProto, name: str, input_size: tuple[int, int] | None) -> ImageInput:
    candidates = []
    for vi in graph_inputs(model):
        ttype = vi.type.tensor_type
        if ttype.elem_type == TensorProto.FLOAT and len(ttype.shape.dim) == 4:
            candidates.append(vi)
    if not candidates:
        found = ", ".join(
            f"{vi.name}: {TensorProto.DataType.Name(vi.type.tensor_type.elem_type)} rank "
            f"{len(vi.type.tensor_type.shape.dim)}"
            for vi in graph_inputs(model)
        )
        raise OnnxpruneError(
            f"{name} has no float32 input of rank 4 (N×C×H×W or N×H×W×C image); inputs are: {found or 'none'}"
        )
    if len(candidates) > 1:
        names = ", ".join(vi.name for vi in candidates)
        raise OnnxpruneError(f"{name} has several image-like inputs ({names}); onnxprune needs exactly one")
    others = [vi.name for vi in graph_inputs(model) if vi.name != candidates[0].name]
    if others:
        raise OnnxpruneError(
            f"{name} has inputs besides the image ({', '.join(others)}); onnxprune prunes single-input "
            "CNNs — export the network without its pre/post-processing inputs"
        )
    vi = candidates[0]
    dims = _dims(vi)
    if isinstance(dims[1], int) and dims[1] in (1, 2, 3, 4) and not (
        isinstance(dims[3], int) and dims[3] in (1, 3, 4) and dims[1] not in (1, 3, 4)
    ):
        layout, channels, spatial = "NCHW", dims[1], dims[2:4]
    elif isinstance(dims[3], int) and dims[3] in (1, 2, 3, 4):
        layout, channels, spatial = "NHWC", dims[3], dims[1:3]
    else:
        raise OnnxpruneError(
            f"{name}: cannot tell the channel axis of input {vi.name!r} with shape {dims}; "
            "onnxprune expects N×C×H×W or N×H×W×C with 1–4 channels"
        )
    if input_size is not None:
        height, width = input_size
        for got, want, what in ((spatial[0], height, "height"), (spatial[1], width, "width")):
            if isinstance(got, int) and got > 0 and got != want:
                raise OnnxpruneError(
                    f"--input-size gives {what} {want} but {name} fixes it at {got}; drop --input-size"
                )
    elif all(isinstance(s, int) and s > 0 for s in spatial):
        height, width = spatial  # type: ignore[assignment]
    else:
        raise FreeInputSize(
            f"{name}: input {vi.name!r} has symbolic height/width {spatial}; pass --input-size H W",
            tuple(s if isinstance(s, int) and s > 0 else None for s in spatial))
    if height < 1 or width < 1:
        raise OnnxpruneError(f"input size must be positive, got {height}×{width}")
    # Exporters mark a free batch as a name, as 0, or (Paddle) as -1.
    batch = dims[0] if (isinstance(dims[0], int) and dims[0] > 0) or (isinstance(dims[0], str) and dims[0]) else None
    return ImageInput(vi.name, layout, int(channels), int(height), int(width), batch)


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants and Identity nodes, keep BN and the model's identity (names, opset, metadata)."""
    import onnxslim

    original = model
    try:
        slimmed = onnxslim.slim(
            onnx.ModelProto.FromString(model.SerializeToString()),
            # BatchNorm stays; MatMul + Add stays (as Gemm between two Reshapes it would bake the
            # batch into a constant, on whatever axis it is); a Transpose of a fixed batch of 1
            # stays a Transpose (as a Reshape it would mix samples once the batch is freed)
            skip_fusion_patterns=["FusionConvBN", "FusionGemm", "EliminationTransposeAsReshape",
                                  "EliminationTransposeViewTranspose"],
        )
    except Exception as err:  # onnxslim failing is a normalization problem, not a user error
        log.warning("onnxslim could not normalize the graph (%s); using it as it is", first_line(err))
        slimmed = onnx.ModelProto.FromString(model.SerializeToString())
    if slimmed is None:
        slimmed = onnx.ModelProto.FromString(model.SerializeToString())
    _restore_identity(slimmed, original)
    _drop_trailing_empty_inputs(slimmed)
    name_nodes(slimmed)
    unshare_initializers(slimmed)
    try:
        slimmed = onnx.shape_inference.infer_shapes(slimmed, data_prop=True)
    except Exception as err:
        log.warning("shape inference failed after normalization: %s", first_line(err))
    return slimmed


def _drop_trailing_empty_inputs(model: onnx.ModelProto) -> None:
    """An optional input left out at the end may be written as "" (torch writes Clip's absent max
    that way); the ONNX spec makes the two the same, and converters read "" as a tensor name."""
    for node in model.graph.node:
        while node.input and not node.input[-1]:
            del node.input[-1]


def name_nodes(model: onnx.ModelProto) -> int:
    """Give unnamed or same-named nodes unique names: groups and slices refer to nodes by name."""
    seen: set[str] = set()
    renamed = 0
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            base = node.name or f"{node.op_type}_{index}"
            name, k = base, 0
            while name in seen:
                k += 1
                name = f"{base}_{k}"
            node.name = name
            renamed += 1
        seen.add(node.name)
    return renamed


def unshare_initializers(model: onnx.ModelProto) -> int:
    """Give every node input its own copy of a shared initializer; returns copies made.

    Exporters deduplicate identical tensors (zero biases, equal BN statistics, one Reshape
    target for many layers). Shared, they could neither be sliced differently per user nor
    fine-tuned apart, so each use owns one.
    """
    inits = {init.name: init for init in model.graph.initializer}
    seen: set[str] = set()
    copies = 0
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            init = inits.get(name)
            if init is None:
                continue
            if name not in seen:
                seen.add(name)
                continue
            copies += 1
            new_name = f"{name}__{copies}"
            while new_name in inits:
                new_name += "_"
            clone = onnx.TensorProto()
            clone.CopyFrom(init)
            clone.name = new_name
            model.graph.initializer.append(clone)
            inits[new_name] = clone
            node.input[i] = new_name
    return copies


def _restore_identity(model: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Put back what graph tools may drop: IR version, producer, metadata, input/output shapes."""
    model.ir_version = original.ir_version
    model.producer_name = original.producer_name
    model.producer_version = original.producer_version
    model.domain = original.domain
    model.model_version = original.model_version
    model.doc_string = original.doc_string
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    model.graph.name = original.graph.name
    originals = {vi.name: vi for vi in list(original.graph.input) + list(original.graph.output)}
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in originals:
            vi.type.CopyFrom(originals[vi.name].type)
    kept = {(op.domain, op.version) for op in model.opset_import}
    for op in original.opset_import:
        if (op.domain, op.version) not in kept and op.domain in ("", "ai.onnx"):
            for existing in model.opset_import:
                if existing.domain == op.domain:
                    existing.version = op.version


def load(
    model: str | Path | onnx.ModelProto, input_size: tuple[int, int] | None = None
) -> LoadedModel:
    """Read, check, refuse what cannot be pruned, normalize; the input model is never modified."""
    if isinstance(model, onnx.ModelProto):
        source, name = None, "the model"
        proto = onnx.ModelProto.FromString(model.SerializeToString())
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as err:
            raise OnnxpruneError(f"the model fails the ONNX checker: {first_line(err)}") from err
    else:
        source, name = Path(model), str(model)
        proto = read_model(source)
    _refuse_unsupported(proto, name)
    image = _image_input(proto, name, input_size)
    external = source is not None and _uses_external_data(source)
    normalized = normalize(proto)
    fixed = image.static_batch
    normalized, axes = free_batch(normalized, image, name)
    if fixed is not None and not fixed_at_one(normalized):  # else it runs one input at a time
        image = replace(image, batch_dim=BATCH_NAME)
    signature = tuple(_copy(vi) for vi in list(graph_inputs(proto)) + list(proto.graph.output))
    return LoadedModel(put_batch_first(normalized, axes), image, source, external, fixed, signature, axes)


def _copy(vi: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    copied = onnx.ValueInfoProto()
    copied.CopyFrom(vi)
    return copied


def _uses_external_data(path: Path) -> bool:
    header = onnx.load(str(path), load_external_data=False)
    return any(onnx.external_data_helper.uses_external_data(t) for t in header.graph.initializer)
