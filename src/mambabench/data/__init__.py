"""LightningDataModules, tokenizers and dataset preparation."""

from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.data.synthetic import InductionHeadsDataModule, SelectiveCopyingDataModule

__all__ = ["InductionHeadsDataModule", "ResumableLoader", "SelectiveCopyingDataModule", "SequenceDataModule"]
