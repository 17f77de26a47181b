# Everyday commands. `make help` lists them.
PYTEST ?= python -m pytest
JOBS ?= 2

.PHONY: help test test-fast test-slow test-gpu lint format

help:
	@echo "make test       the whole suite, slow tests included (CPU; kernels under the Triton interpreter)"
	@echo "make test-fast  the default run: everything but the tests marked slow, on JOBS=$(JOBS) processes"
	@echo "make test-slow  only the tests marked slow"
	@echo "make test-gpu   the kernel tests compiled on the GPU (needs CUDA)"
	@echo "make lint       ruff check + ruff format --check (what CI runs)"
	@echo "make format     apply ruff's fixes and formatting"

test:
	$(PYTEST) -m "" -n $(JOBS)

test-fast:
	$(PYTEST) -m "not slow" -n $(JOBS)

test-slow:
	$(PYTEST) -m slow

test-gpu:
	MAMBABENCH_KERNEL_DEVICE=cuda TRITON_INTERPRET=0 $(PYTEST) tests/kernels -m "" -n $(JOBS)

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .
