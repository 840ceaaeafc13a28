"""Style transfer networks: the conditional-instance-norm transformer and the MobileNetV2 predictor.

Importing this package registers ``style-transformer`` and ``style-predictor-mbv2`` with
:func:`slimvision.registry.create_model`. The teacher weights come from the shipped ONNX graphs
through :mod:`slimvision.models.style.port`.
"""

from slimvision.models.style.config import StylePredictorConfig, StyleTransformerConfig
from slimvision.models.style.predictor import NHWCStylePredictor, StylePredictor
from slimvision.models.style.transformer import NHWCStyleTransformer, StyleTransformer

__all__ = ["NHWCStylePredictor", "NHWCStyleTransformer", "StylePredictor", "StylePredictorConfig", "StyleTransformer",
           "StyleTransformerConfig"]
