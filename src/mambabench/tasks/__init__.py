"""LightningModules: loss, metrics and optimizer groups around a network."""

from mambabench.tasks.base import SequenceTask
from mambabench.tasks.classification import ClassificationTask
from mambabench.tasks.fewshot import FewShotICLTask
from mambabench.tasks.lm import LanguageModelingTask
from mambabench.tasks.regression import RegressionTask

__all__ = ["ClassificationTask", "FewShotICLTask", "LanguageModelingTask", "RegressionTask", "SequenceTask"]
