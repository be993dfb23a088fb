"""The channel data types that tracing produces and grouping, slicing and scoring read.

A *space* is the channels one producer (Conv, Gemm, …) creates; tracing follows each tensor's
channel axis as a list of spaces (``TensorChannels``), records every initializer axis and shape
constant that indexes them, and unites spaces that must stay aligned (``Spaces``). After
``groups.find_groups`` resolves spaces, the same types hold group ids instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TensorChannels", "Slot", "Role", "ShapeConstant", "GroupAttribute", "Spaces", "Trace"]


# what an initializer axis does with a group's channels: makes them, carries one value per
# channel, or reads them
Role = Literal["producer", "per_channel", "consumer"]


@dataclass(frozen=True)
class TensorChannels:
    """Where a tensor's channels are: an axis made of segments, each a whole space.

    A flattened axis interleaves: position = o·(C·inner) + c·inner + j for o < outer, j < inner.
    """

    axis: int
    segments: tuple[int, ...]  # space ids, in order along the axis
    sizes: tuple[int, ...]  # channels per segment
    outer: int = 1
    inner: int = 1

    @property
    def channels(self) -> int:
        return sum(self.sizes)


@dataclass(frozen=True)
class Slot:
    """One initializer axis that indexes channels, laid out like a tensor's channel axis."""

    initializer: str
    axis: int
    segments: tuple[int, ...]  # group ids after ``find_groups`` resolves spaces
    sizes: tuple[int, ...]
    outer: int
    inner: int
    role: Role
    node: str


@dataclass(frozen=True)
class ShapeConstant:
    """An int64 initializer element that states a channel count (Reshape shape, Resize sizes)."""

    initializer: str
    index: int
    segments: tuple[int, ...]
    sizes: tuple[int, ...]
    factor: int  # the element is factor × channels


@dataclass(frozen=True)
class GroupAttribute:
    """A node attribute that equals a channel count (a depthwise Conv's ``group``)."""

    node: str
    name: str
    segments: tuple[int, ...]
    sizes: tuple[int, ...]


@dataclass
class Spaces:
    """Union-find over channel spaces, with sizes, block reasons and inexactness reasons."""

    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    blocked: dict[int, list[str]] = field(default_factory=dict)
    inexact: dict[int, list[str]] = field(default_factory=dict)
    producers: dict[int, list[str]] = field(default_factory=dict)

    def new(self, size: int, producer: str | None = None, blocked: str | None = None) -> int:
        sid = len(self.parent)
        self.parent.append(sid)
        self.size.append(size)
        if producer:
            self.producers.setdefault(sid, []).append(producer)
        if blocked:
            self.blocked.setdefault(sid, []).append(blocked)
        return sid

    def find(self, sid: int) -> int:
        while self.parent[sid] != sid:
            self.parent[sid] = self.parent[self.parent[sid]]
            sid = self.parent[sid]
        return sid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] != self.size[rb]:  # cannot happen for well-formed graphs; stay safe
            self.block(ra, "joined with a space of another size")
            self.block(rb, "joined with a space of another size")
        self.parent[rb] = ra
        for table in (self.blocked, self.inexact, self.producers):
            if rb in table:
                table.setdefault(ra, []).extend(table.pop(rb))

    def block(self, sid: int, reason: str) -> None:
        reasons = self.blocked.setdefault(self.find(sid), [])
        if reason not in reasons:
            reasons.append(reason)

    def mark_inexact(self, sid: int, reason: str) -> None:
        reasons = self.inexact.setdefault(self.find(sid), [])
        if reason not in reasons:
            reasons.append(reason)


@dataclass(frozen=True)
class Trace:
    """What ``flow.trace`` finds: spaces and where their channels are (segments are space ids)."""

    spaces: Spaces
    tensors: dict[str, TensorChannels]
    slots: tuple[Slot, ...]
    shape_constants: tuple[ShapeConstant, ...]
    attributes: tuple[GroupAttribute, ...]
