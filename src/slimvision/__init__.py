"""slimvision: small, fast neural image models for CPUs, browsers and embedded boards.

Importing the package is cheap: heavy modules (onnxruntime, onnx, torch) load only when a
pipeline or a training task is created.
"""

__version__ = "0.1.0"
