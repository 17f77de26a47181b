"""LightningDataModules, tokenizers and dataset preparation."""

from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.data.icl import ICLRegressionDataModule
from mambabench.data.synthetic import InductionHeadsDataModule, SelectiveCopyingDataModule

__all__ = [
    "ICLRegressionDataModule",
    "InductionHeadsDataModule",
    "ResumableLoader",
    "SelectiveCopyingDataModule",
    "SequenceDataModule",
]
