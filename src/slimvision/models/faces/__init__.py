"""Face networks: the dlib ResNet embedding teacher (more to come: detector, mobile students).

Importing this package registers ``face-embedder-dlib-resnet`` with
:func:`slimvision.registry.create_model`. The teacher's weights come from dlib's own ``.dat``
file through :mod:`slimvision.models.faces.dlib_port` (no dlib needed).
"""

from slimvision.models.faces.config import DlibResNetConfig
from slimvision.models.faces.dlib_resnet import DlibResNet

__all__ = ["DlibResNet", "DlibResNetConfig"]
