"""Kohonen self-organising maps (numpy only: no torch at training or at run time)."""

from slimvision.models.som.config import SOMConfig
from slimvision.models.som.som import Prediction, SelfOrganizingMap, TrainingHistory

__all__ = ["Prediction", "SOMConfig", "SelfOrganizingMap", "TrainingHistory"]
