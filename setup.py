"""Package discovery that pyproject.toml cannot express: `kernels/` ships as `mambabench.kernels`."""

from setuptools import find_packages, setup

kernel_packages = ["mambabench.kernels"] + [f"mambabench.kernels.{p}" for p in find_packages("kernels")]
setup(packages=find_packages("src", include=["mambabench*"]) + kernel_packages)
