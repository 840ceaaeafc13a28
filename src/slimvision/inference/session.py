"""Moved to :mod:`slimvision.graph.session`, below compress and export, which run ONNX graphs too."""

from slimvision.graph.session import *  # noqa: F401,F403  (docs/faces.md and users import SessionSettings from here)
