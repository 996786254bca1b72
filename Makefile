# tflbayes — the two commands a user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: venv demo test test-slow clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tflbayes demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

clean:
	rm -rf demo_out .pytest_cache
