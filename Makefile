# make run    - a virtual environment (.venv) with what the scripts need, tiny shakespeare, the default model trained
#               (about 2 min on an idle 2-core CPU, package downloads included), a sample; again: a sample only
# make test   - the same environment with the optional packages (transformers, datasets, safetensors) and pytest,
#               then the test suite (CPU, a few minutes; one pytest process per core)
# make extras - the optional packages alone: GPT-2 / Hugging Face interop, TinyStories from the hub
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: run test setup extras clean

run: setup
	$(PY) data/shakespeare_char/prepare.py
	@if [ -f out/best.pt ]; then echo "out/ holds a model trained before: sampling from it (to train again: $(PY) train.py --overwrite=True)"; \
	else $(PY) train.py; fi
	$(PY) sample.py --start="ROMEO:" --num_samples=1 --max_new_tokens=300

test: extras
	$(PY) -m pytest -q -n auto --dist loadfile tests

setup: $(VENV)/.installed

extras: $(VENV)/.extras

$(VENV)/.installed: requirements.txt requirements-nodeps.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.extras: $(VENV)/.installed requirements-extras.txt
	$(PIP) -r requirements-extras.txt
	touch $@

clean:
	rm -rf $(VENV) out out-* data/*/train.bin data/*/val.bin data/*/meta.json data/*/input.txt
