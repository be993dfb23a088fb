"""The paths a run reads and writes, checked before any work: standard library only, so that a
missing model or an unwritable output folder answers in a fraction of a second, before onnx or
torch is imported."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import OnnxpruneError

__all__ = ["check_model_file", "check_output_path", "default_output", "report_folder"]


def check_model_file(path: str | Path) -> Path:
    """``path`` as a Path, refused unless it names a non-empty file."""
    path = Path(path)
    if not path.exists():
        raise OnnxpruneError(f"{path}: no such file; give the path of an .onnx model")
    if path.is_dir():
        raise OnnxpruneError(f"{path} is a directory; give the path of an .onnx model file")
    if path.stat().st_size == 0:
        raise OnnxpruneError(f"{path} is empty; give the path of an .onnx model file")
    return path


def default_output(model_path: Path) -> Path:
    stem = model_path.name.removesuffix(".onnx")
    return model_path.with_name(f"{stem}.pruned.onnx")


def report_folder(output: Path) -> Path:
    stem = output.name.removesuffix(".onnx")
    return output.with_name(f"{stem}.report")


def check_output_path(output: Path, model_path: Path | None, flag: str = "-o") -> None:
    """Refuse, before any work, an output that would overwrite the input or cannot be written
    (``flag`` names the option in the message)."""
    if model_path is not None and output.resolve() == model_path.resolve():
        raise OnnxpruneError(f"{flag} {output} is the input model; choose another output path")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise OnnxpruneError(f"{flag} {output}: folder {folder} does not exist")
    try:  # try it: permission bits say nothing for root, nor for read-only or special file systems
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OnnxpruneError(f"{flag} {output}: folder {folder} is not writable ({err.strerror}); "
                             "choose another output folder") from None
    if output.is_dir():
        raise OnnxpruneError(f"{flag} {output} is a directory; give a file name")
