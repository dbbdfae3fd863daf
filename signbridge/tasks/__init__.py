"""LightningModules: losses, metrics and optimisation around the plain models."""

from .classification import ClassificationTask
from .hybrid import HybridSignClassifier

__all__ = ["ClassificationTask", "HybridSignClassifier"]
