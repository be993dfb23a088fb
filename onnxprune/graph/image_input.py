"""The model's image input: what shapes, data loading and counting need to know of it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ImageInput"]


@dataclass(frozen=True)
class ImageInput:
    """The model's one image input: its name, layout and the H×W used for counting and data."""

    name: str
    layout: str  # "NCHW" or "NHWC"
    channels: int
    height: int
    width: int
    batch_dim: int | str | None  # static batch size, the symbolic name, or None when unnamed

    @property
    def static_batch(self) -> int | None:
        return self.batch_dim if isinstance(self.batch_dim, int) else None

    def batch_or(self, preferred: int) -> int:
        """The batch size to run with: the model's static one, else the preferred one."""
        return self.static_batch or preferred

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        if self.layout == "NCHW":
            return (batch, self.channels, self.height, self.width)
        return (batch, self.height, self.width, self.channels)
