"""LightningModules: losses, metrics and optimisation around the plain models."""

from .atk import ATKClassifier
from .classification import ClassificationTask
from .hybrid import HybridSignClassifier

__all__ = ["ATKClassifier", "ClassificationTask", "HybridSignClassifier"]
