"""Face networks: the dlib ResNet embedding teacher, the MobileFaceNet student and MTCNN's three
detection networks.

Importing this package registers ``face-embedder-dlib-resnet``, ``face-embedder-mobilefacenet`` and
``face-detector-mtcnn-{pnet,rnet,onet}`` with :func:`slimvision.registry.create_model`. The
teacher's weights come from dlib's own ``.dat`` file through
:mod:`slimvision.models.faces.dlib_port` (no dlib needed); MTCNN's from facenet-pytorch's files
through :func:`slimvision.models.faces.mtcnn.load_mtcnn`.
"""

from slimvision.models.faces.config import DlibResNetConfig, MobileFaceNetConfig
from slimvision.models.faces.dlib_resnet import DlibResNet
from slimvision.models.faces.mobilefacenet import MobileFaceNet
from slimvision.models.faces.mtcnn import ONet, PNet, RNet

__all__ = ["DlibResNet", "DlibResNetConfig", "MobileFaceNet", "MobileFaceNetConfig", "ONet", "PNet", "RNet"]
