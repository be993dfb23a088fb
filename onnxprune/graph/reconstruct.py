"""Least-squares reconstruction after a cut: the layers that read the removed channels are refitted
so that their outputs stay what they were (He et al. 2017, "Channel Pruning for Accelerating Very
Deep Neural Networks"; Luo et al. 2017, ThiNet).

Removing input channels of a Conv (group 1), Gemm or MatMul drops their share of its output; so
does removing input features of a recurrent layer (LSTM, GRU, RNN: a CRNN reader's convolutions
feed one), whose gates read their input through a linear map W like a MatMul's, each sequence
step one row. The
kept channels often carry much of the same information, and a linear refit of the consumer's
weights on them brings most of it back, in closed form and without labels. On the calibration
images, with P a consumer's input patches (the receptive field of sampled output positions,
flattened) and W its weights, the refit is

    W' = argmin ‖P_kept·W'ᵀ + δ − P·Wᵀ‖² + λ‖W' − W_kept‖²

where δ is a shift of the output that the consumer's bias (or the BatchNormalization right after
it) absorbs, and λ pulls towards the plainly sliced weights. Everything comes from the Gram matrix
G = [P 1]ᵀ[P 1] of each consumer's input, taken in one onnxruntime pass over the model before the
cut: every layer is fitted to the unpruned layer's output on the unpruned input (ThiNet's choice:
one pass instead of one per layer, each layer trusting those before it to be reconstructed).

λ is chosen per layer on images the fit did not see, and a layer keeps its refit only where it
reproduces the original output there better than the sliced weights do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from .groups import GroupAnalysis, axis_indices
from .nodes import attribute
from .runtime import batch_for, batches, make_session
from .shapes import up_to

__all__ = ["Consumer", "Refit", "cut_consumers", "reconstruct", "images_within", "MAX_FEATURES", "RECURRENT"]

RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}  # gates per hidden unit: W is (directions, gates·hidden, input)

MAX_FEATURES = 4608  # inputs per output (C·kh·kw) a refit is solved for: a 3×3 conv over 512 channels
MIN_ROWS, MOST_ROWS = 2048, 16384  # sampled rows the fit takes: 4 per feature, within these
RIDGE = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # λ tried, as multiples of the Gram matrix's mean diagonal
CHECK_EVERY = 4  # every fourth calibration image checks the fit instead of entering it
MOST_IMAGES, FEWEST_IMAGES = 64, 8  # calibration images a reconstruction runs on, within the budget below
FORWARD_MACS = 1e12  # multiply-adds the passes of one reconstruction may take (about 30 s on 2 cores)


@dataclass(frozen=True)
class Consumer:
    """A Conv, Gemm, MatMul or recurrent layer (``RECURRENT``) that reads channels a cut removes."""

    node: str
    op: str
    tensor: str  # the input it reads, before the cut
    weight: str
    kept_in: np.ndarray  # inputs per output the cut keeps (for a Conv: C·kh·kw positions)
    kept_out: np.ndarray | None  # outputs it keeps, where the cut narrows them too
    features: int  # inputs per output before the cut: C·kh·kw, or K
    rows_per_image: int  # output places one image gives (its rows of patches)
    transposed: bool = False  # a Gemm's transB: its weight is (outputs, inputs)
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    sequence_first: bool = False  # a recurrent layer's input is (steps, batch, features) (its layout 0)

    def flat(self, weight: np.ndarray) -> np.ndarray:
        """The weight as (outputs, inputs per output)."""
        if self.op == "Conv":
            return weight.reshape(len(weight), -1)
        if self.op in RECURRENT:  # every direction's gates are outputs of the input map
            return weight.reshape(-1, weight.shape[-1])
        return weight if self.transposed else weight.T

    def unflat(self, flat: np.ndarray, like: np.ndarray) -> np.ndarray:
        """(outputs, inputs) back into the layout of ``like`` (the sliced weight)."""
        if self.op == "Conv" or self.op in RECURRENT:
            return flat.reshape(like.shape)
        return flat if self.transposed else flat.T

    def images(self, shape: tuple[int, ...]) -> int:
        """The batch of an input of ``shape``."""
        return shape[1] if self.sequence_first else shape[0]


@dataclass(frozen=True)
class Refit:
    """What reconstruction did to one consumer: its output error on the check images with the refit
    weights, as a share of the error with the plainly sliced ones (kept only when below 1)."""

    node: str
    error_share: float
    kept: bool


def cut_consumers(model: onnx.ModelProto, analysis: GroupAnalysis, keep: Mapping[int, np.ndarray]) -> list[Consumer]:
    """The Conv (group 1, 2-D), Gemm and MatMul nodes whose weight loses input positions in the cut
    ``keep`` (group id → kept channels), in graph order; those with more than ``MAX_FEATURES`` inputs
    per output or an unusual form (auto_pad, alpha/beta, transposed input) are left as sliced."""
    nodes = {n.name: n for n in model.graph.node}
    dims = {i.name: tuple(i.dims) for i in model.graph.initializer}
    order = {n.name: k for k, n in enumerate(model.graph.node)}
    by_axis = {(s.initializer, s.axis): s for s in analysis.slots}
    found: dict[str, Consumer] = {}
    for slot in analysis.slots:
        if slot.role != "consumer" or not set(slot.segments) & keep.keys() or slot.node in found:
            continue
        node = nodes.get(slot.node)
        if node is None or len(node.input) < 2 or node.input[1] != slot.initializer:
            continue
        shape = dims[slot.initializer]
        kept_in = axis_indices(slot.segments, slot.sizes, slot.outer, slot.inner, keep)
        if len(kept_in) == shape[slot.axis]:
            continue
        if node.op_type in RECURRENT and slot.axis != 2:
            continue
        out_axis = 0 if node.op_type == "Conv" else 1 if node.op_type in RECURRENT else 1 - slot.axis
        out = by_axis.get((slot.initializer, out_axis))
        kept_out = (axis_indices(out.segments, out.sizes, out.outer, out.inner, keep)
                    if out is not None and set(out.segments) & keep.keys() else None)
        consumer = _consumer(node, slot.initializer, shape, kept_in, kept_out)
        if consumer is not None and consumer.features <= MAX_FEATURES:
            per_image = _per_image(consumer, analysis.shapes[node.input[0] if node.op_type in RECURRENT else node.output[0]])
            found[node.name] = replace(consumer, rows_per_image=per_image)
    return sorted(found.values(), key=lambda c: order[c.node])


def _consumer(node: onnx.NodeProto, weight: str, shape: tuple[int, ...], kept_in: np.ndarray,
              kept_out: np.ndarray | None) -> Consumer | None:
    if node.op_type == "Conv":
        if len(shape) != 4 or attribute(node, "group", 1) != 1 or attribute(node, "auto_pad", b"NOTSET") not in (
                b"NOTSET", "NOTSET", b"VALID", "VALID"):
            return None
        kernel = (shape[2], shape[3])
        k = kernel[0] * kernel[1]
        # kept_in holds input channels; the patch features are (C, kh, kw) flattened
        features = (kept_in[:, None] * k + np.arange(k)[None, :]).reshape(-1)
        pads, strides, dilations = (attribute(node, name, default) for name, default in
                                    (("pads", [0, 0, 0, 0]), ("strides", [1, 1]), ("dilations", [1, 1])))
        return Consumer(node.name, "Conv", node.input[0], weight, features, kept_out, shape[1] * k, 0, False, kernel,
                        (strides[0], strides[1]), (dilations[0], dilations[1]), (pads[0], pads[1], pads[2], pads[3]))
    if node.op_type == "Gemm":
        if attribute(node, "transA", 0) or attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
            return None
        trans = bool(attribute(node, "transB", 0))
        return Consumer(node.name, "Gemm", node.input[0], weight, kept_in, kept_out, shape[1 if trans else 0], 0, trans)
    if node.op_type == "MatMul" and len(shape) == 2:
        return Consumer(node.name, "MatMul", node.input[0], weight, kept_in, kept_out, shape[0], 0)
    if node.op_type in RECURRENT and len(shape) == 3 and kept_out is None:  # a narrower hidden state is not a refit
        return Consumer(node.name, node.op_type, node.input[0], weight, kept_in, None, shape[2], 0,
                        sequence_first=attribute(node, "layout", 0) == 0)
    return None


class _Gram:
    """For the pruned model's patches P at sampled places and the unpruned layer's outputs Y there:
    A = [P 1]ᵀ[P 1], B = [P 1]ᵀY and ‖Y‖², summed in float64."""

    def __init__(self, kept: int, outputs: int) -> None:
        self.a = np.zeros((kept + 1, kept + 1))
        self.b = np.zeros((kept + 1, outputs))
        self.yy = 0.0
        self.rows = 0

    def add(self, rows: np.ndarray, target: np.ndarray) -> None:
        rows = np.concatenate([rows, np.ones((len(rows), 1), rows.dtype)], axis=1).astype(np.float64)
        target = target.astype(np.float64)
        self.a += rows.T @ rows
        self.b += rows.T @ target
        self.yy += float(np.sum(target * target))
        self.rows += len(rows)


def _per_image(consumer: Consumer, output: tuple[int, ...]) -> int:
    """Rows one input image gives a consumer whose output has the shape ``output`` at batch 1: a
    Conv's output places, a MatMul's positions, a Gemm's one row; for a recurrent layer, whose
    input this shape is then, its sequence steps."""
    if consumer.op == "Conv":
        return int(np.prod(output[2:]))
    if consumer.op in RECURRENT:
        return int(output[0] if consumer.sequence_first else output[1])
    return int(np.prod(output[1:-1])) if consumer.op == "MatMul" else 1


def _places(consumer: Consumer, shape: tuple[int, ...], most: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``most`` sampled rows (output places) of a batch whose consumer input has ``shape``."""
    total = consumer.images(shape) * consumer.rows_per_image
    return np.arange(total) if total <= most else np.sort(rng.choice(total, most, replace=False))


def _rows(consumer: Consumer, x: np.ndarray, places: np.ndarray) -> np.ndarray:
    """The consumer's input patches of the batch ``x`` at ``places`` (from ``_places``), flattened."""
    if consumer.op != "Conv":
        if consumer.sequence_first:  # image by image, as the places count them
            x = x.transpose(1, 0, 2)
        flat = x.reshape(len(x), -1) if consumer.op == "Gemm" else x.reshape(-1, x.shape[-1])
        return flat[places]
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = consumer.kernel, consumer.strides, consumer.dilations, consumer.pads
    padded = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    image, rest = np.divmod(places, out_h * out_w)
    oh, ow = np.divmod(rest, out_w)
    rows = padded[image[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  (oh * sh)[:, None, None, None] + dh * np.arange(kh)[None, None, :, None],
                  (ow * sw)[:, None, None, None] + dw * np.arange(kw)[None, None, None, :]]
    return rows.reshape(len(places), -1)


@dataclass
class _Targets:
    """What the unpruned model gives a consumer on one batch: the sampled places, which images
    check rather than fit, and the layer's outputs there (without its bias)."""

    places: np.ndarray
    check: np.ndarray
    outputs: np.ndarray


def _targets(before: onnx.ModelProto, image: str, inputs: np.ndarray, consumers: list[Consumer], weights:
             dict[str, np.ndarray], batch: int, seed: int) -> dict[str, list[_Targets]]:
    """One pass over the unpruned model: per consumer and batch, its outputs at sampled places
    (every ``CHECK_EVERY``-th image checks the fit instead of entering it)."""
    tensors = list(dict.fromkeys(c.tensor for c in consumers))
    session = make_session(up_to(before, tensors))
    rng = np.random.default_rng([seed, 11])
    per_image = {c.node: int(np.clip(4 * c.features, MIN_ROWS, MOST_ROWS)) / len(inputs) for c in consumers}
    found: dict[str, list[_Targets]] = {c.node: [] for c in consumers}
    for start, x in zip(range(0, len(inputs), batch), batches(inputs, batch)):
        values = dict(zip(tensors, session.run(tensors, {image: x})))
        check = (np.arange(start, start + len(x)) % CHECK_EVERY) == CHECK_EVERY - 1
        for c in consumers:
            old = values[c.tensor]
            places = _places(c, old.shape, int(np.ceil(per_image[c.node] * len(x))), rng)
            rows = _rows(c, old, places)
            found[c.node].append(_Targets(places, check[places // c.rows_per_image],
                                          (rows @ weights[c.node].T).astype(np.float32)))
    return found


def _statistics(now: onnx.ModelProto, image: str, inputs: np.ndarray, wave: list[Consumer],
                targets: dict[str, list[_Targets]], batch: int) -> dict[str, tuple[_Gram, _Gram]]:
    """Each consumer's Gram matrices on the fitting and the checking images: its input in ``now``
    (the pruned model as refitted so far) at the places its targets were taken."""
    tensors = list(dict.fromkeys(c.tensor for c in wave))
    session = make_session(up_to(now, tensors))
    grams = {c.node: (_Gram(len(c.kept_in), targets[c.node][0].outputs.shape[1]),
                      _Gram(len(c.kept_in), targets[c.node][0].outputs.shape[1])) for c in wave}
    for k, x in enumerate(batches(inputs, batch)):
        values = dict(zip(tensors, session.run(tensors, {image: x})))
        for c in wave:
            t = targets[c.node][k]
            rows = _rows(c, values[c.tensor], t.places)
            for gram, chosen in ((grams[c.node][0], ~t.check), (grams[c.node][1], t.check)):
                if chosen.any():
                    gram.add(rows[chosen], t.outputs[chosen])
    return grams


def _absorber(model: onnx.ModelProto, consumer: Consumer, outputs: int) -> tuple[str, int] | None:
    """Where a shift of the consumer's ``outputs`` outputs can go: its bias (+1), or the running mean
    of the one BatchNormalization reading its output (−1); None where neither exists. A recurrent
    layer's bias B holds the input map's bias and the recurrence's, each direction's side by side
    (``_shifted``)."""
    node = next(n for n in model.graph.node if n.name == consumer.node)
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    if consumer.op in RECURRENT:
        bias = node.input[3] if len(node.input) > 3 else ""
        return (bias, 1) if bias and sizes.get(bias) == 2 * outputs else None
    if consumer.op in ("Conv", "Gemm") and len(node.input) > 2 and sizes.get(node.input[2]) == outputs:
        return node.input[2], 1
    readers = [n for n in model.graph.node if node.output[0] in n.input]
    if (consumer.op == "Conv" and len(readers) == 1 and readers[0].op_type == "BatchNormalization"
            and readers[0].input[0] == node.output[0] and sizes.get(readers[0].input[3]) == outputs):
        return readers[0].input[3], -1
    return None


def _solve(gram: _Gram, prior: np.ndarray, shifts: bool, ridge: float) -> np.ndarray:
    """The refit (rows: kept inputs, then the shift where ``shifts``; columns: outputs), pulled by
    ``ridge`` towards ``prior`` (the sliced weights)."""
    rows = slice(None) if shifts else slice(0, -1)
    pull = np.full(len(prior), ridge)
    if shifts:
        pull[-1] = 0.0
    try:
        return np.linalg.solve(gram.a[rows, rows] + np.diag(pull), gram.b[rows] + pull[:, None] * prior)
    except np.linalg.LinAlgError:
        return prior


def _error(gram: _Gram, solution: np.ndarray, shifts: bool) -> float:
    """‖[P 1]·solution − Y‖² over the rows ``gram`` summed."""
    rows = slice(None) if shifts else slice(0, -1)
    return float(np.sum(solution * (gram.a[rows, rows] @ solution)) - 2 * np.sum(solution * gram.b[rows]) + gram.yy)


def reconstruct(before: onnx.ModelProto, sliced: onnx.ModelProto, consumers: list[Consumer], image: str,
                inputs: np.ndarray, seed: int = 0, macs: int = 0,
                progress: Callable[[int, int], None] | None = None) -> tuple[onnx.ModelProto, list[Refit]]:
    """``sliced`` (``before`` cut by ``slice.slice_model``) with the ``consumers``' weights refitted
    on ``inputs`` (the calibration images), and what each refit achieved. Layer by layer in waves,
    each fitted on what the layers before it, refitted, now give (He et al.): one pass over
    ``before`` for the targets, then one over the part of the pruned model each wave reads. Only
    initializer values change. ``macs``, the model's multiply-adds per input, bounds how many of
    ``inputs`` are used (``FORWARD_MACS``)."""
    waves = _waves(before, consumers)
    inputs = inputs[: images_within(macs, len(waves), len(inputs))]
    fitting = len(inputs) - len(inputs) // CHECK_EVERY
    # a layer with fewer rows to fit than twice its unknowns per output is left as sliced: the
    # fit would follow the few rows there are (deep maps of a few places, a Gemm after pooling)
    consumers = [c for c in consumers if c.rows_per_image * fitting >= 2 * len(c.kept_in)]
    fitted = {c.node for c in consumers}
    waves = [kept for kept in ([c for c in wave if c.node in fitted] for wave in waves) if kept]
    if not consumers or len(inputs) < CHECK_EVERY:
        return sliced, []
    old = {i.name: i for i in before.graph.initializer}
    # the unpruned weights as (outputs, inputs), only the outputs the cut keeps
    weights = {c.node: c.flat(numpy_helper.to_array(old[c.weight])).astype(np.float32)[
        slice(None) if c.kept_out is None else c.kept_out] for c in consumers}
    batch = batch_for(int(np.prod(inputs.shape[1:])), most=16)
    targets = _targets(before, image, inputs, consumers, weights, batch, seed)
    refitted = onnx.ModelProto()
    refitted.CopyFrom(sliced)
    results: list[Refit] = []
    for k, wave in enumerate(waves):
        grams = _statistics(refitted, image, inputs, wave, targets, batch)
        results += _refit(refitted, wave, grams, weights)
        if progress:
            progress(k + 1, len(waves))
    return refitted, results


def images_within(macs: int, waves: int, given: int) -> int:
    """How many calibration images a reconstruction of ``waves`` waves uses: the passes (the full
    model once, each wave about half of it) within ``FORWARD_MACS``, between ``FEWEST_IMAGES`` and
    ``MOST_IMAGES`` (and never more than ``given``)."""
    passes = 1 + waves / 2
    affordable = FORWARD_MACS / max(macs * passes, 1)
    return int(min(given, MOST_IMAGES, max(FEWEST_IMAGES, affordable)))


def _waves(model: onnx.ModelProto, consumers: list[Consumer]) -> list[list[Consumer]]:
    """The consumers in waves: each one's input depends on no consumer of its own wave or a later
    one (a tensor's level: the most consumers on a path to it; nodes come in topological order)."""
    refitted = {c.node for c in consumers}
    level: dict[str, int] = {}
    for node in model.graph.node:
        here = max((level.get(i, 0) for i in node.input if i), default=0) + (node.name in refitted)
        for out in node.output:
            level[out] = here
    levels = {c.node: level.get(c.tensor, 0) for c in consumers}
    return [[c for c in consumers if levels[c.node] == k] for k in sorted(set(levels.values()))]


def _refit(refitted: onnx.ModelProto, wave: list[Consumer], grams: dict[str, tuple[_Gram, _Gram]],
           weights: dict[str, np.ndarray]) -> list[Refit]:
    """Solve each consumer of ``wave`` and write the refits that help into ``refitted``
    (``weights``: each one's unpruned weights as (outputs, inputs))."""
    new = {i.name: i for i in refitted.graph.initializer}
    results = []
    for c in wave:
        fit, check = grams[c.node]
        if not check.rows:
            continue
        weight = weights[c.node].astype(np.float64)
        sliced_weight = numpy_helper.to_array(new[c.weight])
        absorber = _absorber(refitted, c, len(c.flat(sliced_weight)))
        shifts = absorber is not None
        plain = np.zeros((len(c.kept_in) + shifts, len(weight)))
        plain[: len(c.kept_in)] = weight[:, c.kept_in].T
        scale = float(np.mean(np.diag(fit.a)[:-1]))
        best, best_error = plain, _error(check, plain, shifts)
        plain_error = best_error
        for ridge in RIDGE:
            solution = _solve(fit, plain, shifts, ridge * scale)
            error = _error(check, solution, shifts)
            if error < best_error:
                best, best_error = solution, error
        kept = best is not plain
        results.append(Refit(c.node, best_error / plain_error if plain_error > 0 else 1.0, kept))
        if not kept:
            continue
        flat = best[: len(c.kept_in)].T
        new[c.weight].CopyFrom(numpy_helper.from_array(
            np.ascontiguousarray(c.unflat(flat, sliced_weight).astype(sliced_weight.dtype)), c.weight))
        if absorber is not None:
            name, sign = absorber
            values = _shifted(c, numpy_helper.to_array(new[name]), sign * best[-1])
            new[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(values), name))
    return results


def _shifted(consumer: Consumer, values: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``values`` (a bias or running mean) with the refit's output ``shift`` added; a recurrent
    layer's B is (directions, 2·gates·hidden), the input map's bias the first half of each row."""
    if consumer.op in RECURRENT:
        values = values.copy()
        half = values.shape[-1] // 2
        values[..., :half] += shift.reshape(values.shape[0], half).astype(values.dtype)
        return values
    return values + shift.reshape(values.shape).astype(values.dtype)
