"""Residual blocks that can be removed whole (depth pruning): a branch joined by ``Add`` to a
skip of the same shape, where the skip is the branch's own input (an identity skip) or a short
projection of it (a strided 1×1 conv and its BatchNorm), and where nothing outside the branch
reads what the branch computes. Removing one leaves the skip in its place: the block computes
``skip(x)`` instead of ``skip(x) + branch(x)``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import onnx

from .flops import node_macs

__all__ = ["Block", "find_blocks", "remove_blocks"]

# what a branch must hold to be a block: something that computes (not an Add of a bias)
WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# ops a projection skip is made of, and how many of them it may chain
PROJECTION_OPS = {"Conv", "BatchNormalization", "AveragePool", "MaxPool", "Relu", "Identity"}
LONGEST_PROJECTION = 4
LARGEST_BRANCH = 400  # nodes; a "branch" larger than this is most of a network, not a block


@dataclass(frozen=True)
class Block:
    """A removable residual block: the ``add`` node joining ``skip`` and a branch of ``nodes``
    that starts from ``entry`` (the skip itself where it is an identity)."""

    add: str
    entry: str  # the tensor the branch (and the skip) start from
    skip: str  # the Add input that stays
    nodes: tuple[str, ...]  # the branch, in graph order: removed with the Add
    macs: int  # the branch's multiply-adds at batch 1

    @property
    def identity(self) -> bool:
        return self.skip == self.entry

    def as_dict(self) -> dict[str, object]:
        return {"add": self.add, "entry": self.entry, "skip": "identity" if self.identity else "projection",
                "nodes": len(self.nodes), "macs": self.macs}


def find_blocks(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> list[Block]:
    """Every removable residual block of ``model`` (``shapes``: each tensor's shape at batch 1),
    in graph order. Blocks nest: a block inside another's branch is found too."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[str]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node.name)
    outputs = {o.name for o in graph.output}
    constants = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    order = {node.name: k for k, node in enumerate(graph.node)}
    blocks = []
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or node.input[0] == node.input[1]:
            continue
        out = shapes.get(node.output[0])
        if out is None or any(shapes.get(i) != out for i in node.input):
            continue  # broadcasting: a bias or a scale, not a skip
        found = None
        for branch_end, skip in ((node.input[1], node.input[0]), (node.input[0], node.input[1])):
            for entry in _entries(skip, producer, constants):
                nodes = _branch(branch_end, entry, producer, constants)
                if nodes and _private(nodes, node.name, producer, readers, outputs, branch_end):
                    block = Block(node.name, entry, skip, tuple(sorted((n.name for n in nodes), key=lambda name: order[name])),
                                  sum(node_macs(n, shapes) for n in nodes))
                    # of two readings, the identity skip, else the costlier branch goes
                    if found is None or (block.identity, block.macs) > (found.identity, found.macs):
                        found = block
                    break
        if found is not None:
            blocks.append(found)
    return blocks


def _entries(skip: str, producer: dict, constants: set[str]) -> list[str]:
    """Where a branch beside ``skip`` may start: ``skip`` itself, then each tensor up a short
    chain of projection ops it is computed from (nearest first)."""
    entries, tensor = [skip], skip
    for _ in range(LONGEST_PROJECTION):
        node = producer.get(tensor)
        if node is None or node.op_type not in PROJECTION_OPS:
            break
        data = [i for i in node.input if i and i not in constants]
        if len(data) != 1:
            break
        tensor = data[0]
        entries.append(tensor)
    return entries


def _branch(end: str, entry: str, producer: dict, constants: set[str]) -> list[onnx.NodeProto] | None:
    """The nodes computing ``end`` from ``entry`` and constants alone, or None where ``end``
    also reads another tensor (a graph input, a tensor from elsewhere) or holds no weighted op."""
    nodes: dict[str, onnx.NodeProto] = {}
    stack = [end]
    while stack:
        tensor = stack.pop()
        if tensor == entry or tensor in constants or not tensor:
            continue
        node = producer.get(tensor)
        if node is None or len(nodes) > LARGEST_BRANCH:
            return None  # a graph input, or too far: not a block
        if node.name in nodes:
            continue
        nodes[node.name] = node
        stack.extend(node.input)
    if not any(n.op_type in WEIGHTED for n in nodes.values()):
        return None
    if not any(entry in n.input for n in nodes.values()):
        return None
    return list(nodes.values())  # the Constant nodes it reads stay: remove_blocks drops the unread


def _private(nodes: list[onnx.NodeProto], add: str, producer: dict, readers: dict, outputs: set[str],
             end: str) -> bool:
    """Nothing outside the branch reads what it computes: only the branch and, at its end, the Add."""
    inside = {n.name for n in nodes}
    for n in nodes:
        for out in n.output:
            if out in outputs:
                return False
            allowed = inside | ({add} if out == end else set())
            if any(r not in allowed for r in readers.get(out, [])):
                return False
    return True


def remove_blocks(model: onnx.ModelProto, blocks: list[Block]) -> onnx.ModelProto:
    """``model`` without the ``blocks``' branches and Adds, each skip carrying on in its place;
    the names of everything else are kept. A block inside a removed one goes with it."""
    removed: set[str] = set()
    renamed: dict[str, str] = {}
    graph = model.graph
    by_name = {n.name: n for n in graph.node}
    outputs = {o.name for o in graph.output}
    identities = []

    def resolve(name: str) -> str:
        while name in renamed:
            name = renamed[name]
        return name

    for block in blocks:
        if block.add in removed:
            continue  # inside a branch already removed
        add = by_name[block.add]
        removed |= {block.add, *block.nodes}
        if add.output[0] in outputs:  # the file's output keeps its name
            identities.append(onnx.helper.make_node("Identity", [block.skip], [add.output[0]], name=block.add))
        else:
            renamed[add.output[0]] = block.skip
    result = onnx.ModelProto()
    result.CopyFrom(model)
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name in removed:
            kept.extend(i for i in identities if i.name == node.name)
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [resolve(i) if i else i for i in node.input]
        kept.append(copy)
    for identity in identities:
        identity.input[0] = resolve(identity.input[0])
    del result.graph.node[:]
    result.graph.node.extend(kept)
    _drop_unused(result)
    return result


def _drop_unused(model: onnx.ModelProto) -> None:
    """Initializers, Constant nodes and shape records nothing reads or computes any more."""
    graph = model.graph
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in read]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    computed = {o for n in graph.node for o in n.output} | {i.name for i in graph.input} | {i.name for i in kept}
    info = [v for v in graph.value_info if v.name in computed]
    del graph.value_info[:]
    graph.value_info.extend(info)
