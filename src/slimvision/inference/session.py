"""Moved to :mod:`slimvision.graph.session`, below compress and export, which run ONNX graphs too."""

from slimvision.graph.session import *  # noqa: F401,F403  (users import SessionSettings / OnnxModel from here)
