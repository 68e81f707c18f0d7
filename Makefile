# anyseg: set-up, the main job on the bundled model, and the whole test suite.
# Every target builds the virtual environment first if it is missing, so each works on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch is pinned: an unpinned torch on a machine without one pulls a multi-GB CUDA build.
TORCH   := torch==2.13.0
# Idle OpenMP threads that spin make PyTorch several times slower on a busy machine.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test lint typecheck pytest browser bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,onnx,ray]'
# CLIP's BPE vocabulary ships in the open_clip_torch wheel; only that file is read (the package
# is never imported, and its torchvision does not import beside this torch): no dependencies.
	$(BIN)/python -m pip install -q --no-deps open_clip_torch
	rm -f $(VENV)/.installed-*
	touch $@

## The main job: segment the bundled example scene with the bundled default model.
demo: $(STAMP)
	$(BIN)/anyseg segment examples/scene.png --point 331,196 --multimask -o outputs/demo
	@echo "outputs written to outputs/demo/"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium for the annotation tool's browser tests (no-op when present; needs root).
browser:
	bash scripts/install-browser.sh || echo "Chromium not installed: the browser tests will be skipped (CI=true makes them fail)"

pytest: $(STAMP) browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## The whole test suite: lint, types, tests (slow ones included).
test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_model.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
