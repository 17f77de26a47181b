"""LightningModules: loss, metrics and optimizer groups around a network."""

from mambabench.tasks.base import SequenceTask
from mambabench.tasks.classification import ClassificationTask
from mambabench.tasks.lm import LanguageModelingTask

__all__ = ["ClassificationTask", "LanguageModelingTask", "SequenceTask"]
