"""Torch-side fixtures: the teacher ported once per session, ONNX Runtime sessions on its float graphs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
# Denormal floats make CPU convolutions many times slower (the sigmoid tail of the transformer
# produces them); flushing them to zero changes no result at the tolerances tested here.
torch.set_flush_denormal(True)


def ort_session(model: bytes | str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def nhwc(tensor) -> np.ndarray:
    """(B, C, H, W) torch tensor -> (B, H, W, C) numpy array."""
    return tensor.detach().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="session")
def teacher_transformer(cache_dir):
    from slimvision.models.style.port import port_transformer

    return port_transformer()


@pytest.fixture(scope="session")
def teacher_predictor(cache_dir):
    from slimvision.models.style.port import port_predictor

    return port_predictor()
