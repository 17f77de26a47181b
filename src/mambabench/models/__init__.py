"""Networks: blocks, mixers, backbones and heads. Models know nothing about data or losses."""

from mambabench.models.generation import generate, sample_next
from mambabench.models.lm import LMBackbone, LMHeadModel

__all__ = ["LMBackbone", "LMHeadModel", "generate", "sample_next"]
