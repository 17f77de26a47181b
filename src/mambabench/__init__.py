"""mambabench: reproduce and extend the Mamba paper with Lightning + Hydra."""

__version__ = "0.1.0"
