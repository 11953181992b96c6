# make run   - virtual environment, dependencies, data, train the default model (1-2 min on a CPU), print a sample
# make test  - the same environment, then the test suite (CPU, a few minutes; one pytest process per core)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test setup clean

run: setup
	$(PY) data/shakespeare_char/prepare.py
	$(PY) train.py
	$(PY) sample.py --start="ROMEO:" --num_samples=1 --max_new_tokens=300

test: setup
	$(PY) -m pytest -q -n auto --dist loadfile tests

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt pytest pytest-xdist
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $@

clean:
	rm -rf $(VENV) out out-* data/*/train.bin data/*/val.bin data/*/meta.json data/*/input.txt
