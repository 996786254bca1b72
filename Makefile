# tflbayes — the two commands a user needs: `make demo` and `make test`.
# `make venv` installs everything (the base runtime, the `train` extra and the `test` extra: pytest,
# nbclient and ipykernel, so `make test` executes notebooks/ too).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: venv demo test test-slow bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tflbayes demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

# The standard benchmark suite: writes benchmarks/results/*.json, plots and reports; then README's headline.
bench: $(STAMP)
	$(VENV)/bin/tflbayes bench --suite standard --data digits,mnist --out benchmarks/results
	$(PY) benchmarks/update_readme.py --results benchmarks/results --data digits,mnist --readme README.md

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

clean:
	rm -rf demo_out .pytest_cache
