"""Write outputs atomically: a temporary name in the target folder, renamed only when complete.

An interrupted run leaves the previous output (or nothing) in place, never a partial file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import onnx

from .errors import OnnxpruneError

__all__ = ["default_output", "report_folder", "check_output_path", "write_model", "write_report"]

_PROTOBUF_LIMIT = 2**31 - 1


def default_output(model_path: Path) -> Path:
    stem = model_path.name[: -len(".onnx")] if model_path.name.endswith(".onnx") else model_path.name
    return model_path.with_name(f"{stem}.pruned.onnx")


def report_folder(output: Path) -> Path:
    stem = output.name[: -len(".onnx")] if output.name.endswith(".onnx") else output.name
    return output.with_name(f"{stem}.report")


def check_output_path(output: Path, model_path: Path | None) -> None:
    """Refuse, before any work, an output that would overwrite the input or cannot be written."""
    if model_path is not None and output.resolve() == model_path.resolve():
        raise OnnxpruneError(f"-o {output} is the input model; choose another output path")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise OnnxpruneError(f"-o {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OnnxpruneError(f"-o {output}: folder {folder} is not writable")
    if output.is_dir():
        raise OnnxpruneError(f"-o {output} is a directory; give a file name ending in .onnx")


def write_model(model: onnx.ModelProto, output: Path) -> None:
    """Save atomically; models past protobuf's 2 GiB keep their weights in ``<name>.data``."""
    folder = output.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    data_name = f"{output.name}.data"
    tmp_data = folder / f".{data_name}.tmp"
    try:
        if model.ByteSize() < _PROTOBUF_LIMIT:
            onnx.save_model(model, tmp)
            os.replace(tmp, output)
            return
        # External data is referenced by its final name, so write it first, then the graph.
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        onnx.save_model(copy, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=tmp_data.name)
        for init in copy.graph.initializer:
            for entry in init.external_data:
                if entry.key == "location":
                    entry.value = data_name
        os.replace(tmp_data, folder / data_name)
        onnx.save_model(copy, tmp)
        os.replace(tmp, output)
    except BaseException:
        for leftover in (Path(tmp), tmp_data):
            if leftover.exists():
                leftover.unlink()
        raise


def write_report(report: dict[str, Any], folder: Path, extra: dict[str, bytes] | None = None) -> None:
    """Write report.json (and any extra files) into ``folder`` atomically, replacing an old one."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        for name, content in (extra or {}).items():
            (staging / name).write_bytes(content)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
