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

from .runtime import PROTOBUF_LIMIT

__all__ = ["atomic_write_bytes", "write_model", "write_report"]



def write_model(model: onnx.ModelProto, output: Path, external_data: bool = False) -> None:
    """Save atomically. With ``external_data`` (or past protobuf's 2 GiB) the weights go to
    ``<name>.data`` beside the graph, as the input model had them."""
    folder = output.parent if str(output.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=folder))
    try:
        staged = staging / output.name
        if external_data or model.ByteSize() >= PROTOBUF_LIMIT:
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            data_name = f"{output.name}.data"
            onnx.save_model(copy, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            os.replace(staging / data_name, folder / data_name)  # the graph names it; graph goes last
        else:
            onnx.save_model(model, str(staged))
        os.replace(staged, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """``content`` at ``path``, flushed to disk under a temporary name first, then renamed."""
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
