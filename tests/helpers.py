"""Small builders for test data files (IDX, CSV, wheels), shared by several test modules."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX (magic 0000 08 NN, big-endian dimensions, raw bytes)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_gz_bytes(array: np.ndarray) -> bytes:
    return gzip.compress(idx_bytes(array), mtime=0)


def random_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    return images, labels


def kaggle_csv(images: np.ndarray, labels: np.ndarray | None) -> str:
    columns = [f"pixel{i}" for i in range(784)]
    lines = [",".join((["label"] if labels is not None else []) + columns)]
    for index, image in enumerate(images):
        cells = [str(v) for v in image.reshape(-1)]
        if labels is not None:
            cells.insert(0, str(labels[index]))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def tiny_model(path: Path) -> Path:
    """A 784×10 linear ONNX model (logits only), built in milliseconds: for the tests of what
    the commands do around the model, where its answers do not matter."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])],
        initializer=[
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
