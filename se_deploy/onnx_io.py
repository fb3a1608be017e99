"""Loading and saving ONNX models with one-line errors and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

from se_deploy._util import atomic_output
from se_deploy.errors import InputError, first_line

# Protobuf cannot serialise a single message over 2 GB; above this we switch to external data.
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2


def load_onnx(path: str | os.PathLike, *, check: bool = True):
    """Load an ONNX model; a missing, truncated, corrupt or non-ONNX file raises InputError."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise InputError(f"ONNX file not found: {p}")
    if p.is_dir():
        raise InputError(f"expected an ONNX file, got a directory: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"ONNX file is empty: {p}")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf DecodeError, truncated file, text file ...
        raise InputError(f"not a readable ONNX model: {p} ({type(e).__name__})") from None
    if len(model.graph.node) == 0 and len(model.graph.output) == 0:
        raise InputError(f"not an ONNX model (no graph): {p}")
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as e:
            msg = first_line(e)
            raise InputError(f"invalid ONNX model {p}: {msg}") from None
    return model


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically as one file; use external data only above 2 GB."""
    import onnx

    final = Path(path)
    size = model.ByteSize()
    if size < EXTERNAL_DATA_THRESHOLD:
        with atomic_output(final) as tmp:
            tmp.write_bytes(model.SerializeToString())
        return final
    # Large model: weights go to <name>.data beside the model. Write both under temp names.
    data_name = final.name + ".data"
    with atomic_output(final.parent / data_name) as tmp_data:
        with atomic_output(final) as tmp:
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name, size_threshold=1024)
            # point the graph at the final data file name
            m2 = onnx.load(str(tmp), load_external_data=False)
            for init in m2.graph.initializer:
                for entry in init.external_data:
                    if entry.key == "location":
                        entry.value = data_name
            tmp.write_bytes(m2.SerializeToString())
    return final


def model_bytes(model) -> bytes:
    return model.SerializeToString()
