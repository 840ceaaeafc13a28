"""ONNX graph tooling shared by compress, export and inference (a bottom layer).

- :mod:`slimvision.graph.rewrite`: load-time rewrites of shipped graphs (free height/width,
  the instance-norm statistics split for tiling), the on-disk rewrite cache, dead-node removal.
- :mod:`slimvision.graph.precision`: an int8 QDQ graph run in float (weights dequantized once).
- :mod:`slimvision.graph.surgery`: exported-graph clean-up (compact names, zero pads folded
  into convolutions).

Imports onnx, onnxruntime and numpy only, never torch, and nothing of slimvision above ``io``.
"""
