# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Where the model store lives; tests and CI point it at ../shared/models.
export TOONSTREAM_MODELS ?= $(CURDIR)/../shared/models

INPUT  ?= ../shared/media/tears_640x360.mp4
OUTPUT ?= out/tears_anime.mp4
STYLE  ?= anime
ARGS   ?=

.PHONY: run test venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,web,ray]'
	touch $@

venv: $(VENV)/.installed

run: venv
	@mkdir -p $(dir $(OUTPUT))
	$(PY) run_video.py $(INPUT) -o $(OUTPUT) --style $(STYLE) -y $(ARGS)

test: venv
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) out
