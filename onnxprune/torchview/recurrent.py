"""onnx2torch converters for ONNX LSTM and GRU, which it lacks: the recurrent heads of CNN + RNN
readers (CRNN, captcha and OCR models).

The torch modules keep ONNX's own weight layout — W (D, gates·H, I), R (D, gates·H, H),
B (D, 2·gates·H) — as their parameters, so fine-tuned values map back onto the initializers one
to one (``importer.Link`` "same"), and the recurrence is written out in ONNX's gate order (LSTM:
i, o, f, c; GRU: z, r, h). The input projection of all time steps is one matmul; only the
recurrence loops over time.
"""

from __future__ import annotations

import torch
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn

__all__ = ["OnnxLSTM", "OnnxGRU", "recurrent_converter"]

_OPTIONAL = {"LSTM": ("sequence_lens", "initial_h", "initial_c"), "GRU": ("sequence_lens", "initial_h")}
_GATES = {"LSTM": 4, "GRU": 3}


class _Recurrent(nn.Module):
    """What LSTM and GRU share: parameters in ONNX's layout, directions, batch layout."""

    def __init__(self, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None, gates: int, hidden: int,
                 direction: str, layout: int, extras: tuple[str, ...], initial: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.W = nn.Parameter(w.clone())
        self.R = nn.Parameter(r.clone())
        self.B = nn.Parameter(b.clone()) if b is not None else None
        self.gates, self.hidden, self.layout = gates, hidden, layout
        self.reverse = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}[direction]
        self.extras = extras  # the optional inputs that come at run time, in the order forward gets them
        self.outputs = 1
        for name, value in initial.items():
            self.register_buffer(name, value.clone())

    def _state(self, name: str, given: dict[str, torch.Tensor], directions: int, batch: int,
               like: torch.Tensor) -> torch.Tensor:
        value = given.get(name)
        if value is None and hasattr(self, name):
            value = getattr(self, name)
        if value is None:
            return like.new_zeros(directions, batch, self.hidden)
        return value

    def forward(self, x: torch.Tensor, *extras: torch.Tensor):  # noqa: D401 - ONNX's outputs
        given = dict(zip(self.extras, extras))
        if self.layout:
            x = x.transpose(0, 1)  # (N, T, I) → (T, N, I)
        steps, batch = x.shape[0], x.shape[1]
        h0 = self._state("initial_h", given, len(self.reverse), batch, x)
        c0 = self._state("initial_c", given, len(self.reverse), batch, x) if self.gates == 4 else None
        ys, hs, cs = [], [], []
        for d, backwards in enumerate(self.reverse):
            size = self.gates * self.hidden
            wb = self.B[d, :size] if self.B is not None else 0
            rb = self.B[d, size:] if self.B is not None else 0
            projected = x @ self.W[d].T + wb  # every step's input projection at once
            order = range(steps - 1, -1, -1) if backwards else range(steps)
            h, c = h0[d], (c0[d] if c0 is not None else None)
            outs: list[torch.Tensor] = [x.new_empty(0)] * steps
            for t in order:
                h, c = self._step(projected[t], h, c, self.R[d], rb)
                outs[t] = h
            ys.append(torch.stack(outs))
            hs.append(h)
            if c is not None:
                cs.append(c)
        y = torch.stack(ys, 1)  # (T, D, N, H)
        y_h = torch.stack(hs)
        if self.layout:
            y, y_h = y.permute(2, 0, 1, 3), y_h.transpose(0, 1)  # (N, T, D, H), (N, D, H)
        outputs = [y, y_h]
        if self.gates == 4:
            y_c = torch.stack(cs)
            outputs.append(y_c.transpose(0, 1) if self.layout else y_c)
        # the node lists 1 to 3 outputs; onnx2torch picks listed ones by position
        return outputs[0] if self.outputs == 1 else tuple(outputs[: self.outputs])

    def _step(self, projected, h, c, r, rb):
        raise NotImplementedError


class OnnxLSTM(_Recurrent):
    """ONNX LSTM (sigmoid, tanh, tanh; no peepholes, clip or input_forget)."""

    def _step(self, projected, h, c, r, rb):
        i, o, f, g = (projected + h @ r.T + rb).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class OnnxGRU(_Recurrent):
    """ONNX GRU (sigmoid, tanh), either ``linear_before_reset``."""

    linear_before_reset = False

    def _step(self, projected, h, c, r, rb):
        hidden = self.hidden
        xz, xr, xh = projected.chunk(3, -1)
        rz, rr, rh = r.split(hidden, 0)
        bz, br, bh = (rb.split(hidden, -1) if isinstance(rb, torch.Tensor) else (0, 0, 0))
        z = torch.sigmoid(xz + h @ rz.T + bz)
        reset = torch.sigmoid(xr + h @ rr.T + br)
        if self.linear_before_reset:
            candidate = torch.tanh(xh + reset * (h @ rh.T + bh))
        else:
            candidate = torch.tanh(xh + (reset * h) @ rh.T + bh)
        return (1 - z) * candidate + z * h, None


def recurrent_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """LSTM or GRU with constant weights; refused (NotImplementedError) for forms not written out."""
    op = node.operation_type
    a = node.attributes
    default_activations = ["Sigmoid", "Tanh", "Tanh"] if op == "LSTM" else ["Sigmoid", "Tanh"]
    directions = 2 if a.get("direction", "forward") == "bidirectional" else 1
    activations = list(a.get("activations", default_activations * directions))
    if [s.lower() for s in activations] != [s.lower() for s in default_activations * directions]:
        raise NotImplementedError(f"{op} with activations {activations}")
    if a.get("clip") is not None or a.get("input_forget", 0):
        raise NotImplementedError(f"{op} with clip or input_forget")
    names = list(node.input_values) + [""] * 8
    for index, what in ((1, "W"), (2, "R")):
        if names[index] not in graph.initializers:
            raise NotImplementedError(f"{op} whose {what} is not a constant")
    if op == "LSTM" and names[7]:
        raise NotImplementedError("LSTM with peepholes")
    tensor = lambda name: graph.initializers[name].to_torch().float()  # noqa: E731
    b = tensor(names[3]) if names[3] else None
    if names[3] and names[3] not in graph.initializers:
        raise NotImplementedError(f"{op} whose B is not a constant")
    extras, initial = [], {}
    for offset, name in enumerate(_OPTIONAL[op], start=4):
        value = names[offset]
        if not value:
            continue
        if name == "sequence_lens":
            if value in graph.initializers:
                continue  # a constant length: every sequence is whole (checked against onnxruntime)
            raise NotImplementedError(f"{op} with sequence_lens computed at run time")
        if value in graph.initializers:
            initial[name] = tensor(value)
        else:
            extras.append((name, value))
    cls = OnnxLSTM if op == "LSTM" else OnnxGRU
    module = cls(tensor(names[1]), tensor(names[2]), b, _GATES[op], int(a["hidden_size"]),
                 a.get("direction", "forward"), int(a.get("layout", 0)), tuple(n for n, _ in extras), initial)
    module.outputs = len(node.output_values)
    if op == "GRU":
        module.linear_before_reset = bool(a.get("linear_before_reset", 0))
    inputs = (node.input_values[0], *(v for _, v in extras))
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(inputs=inputs,
                                                                                  outputs=node.output_values))
