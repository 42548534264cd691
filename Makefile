# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The model store: $TOONSTREAM_MODELS when set (this project's CI points it at its test store,
# ../shared/models), else the per-user cache (~/.cache/toonstream/models on Linux), which
# `make run` fills on first use (--fetch: the style it needs, verified).
TEST_MODELS ?= $(CURDIR)/../shared/models

STYLE  ?= anime
# The bundled sample (CC0, streamer/samples/README.md), or your own file or folder.
INPUT  ?= streamer/samples/luciano.png
INNAME  = $(notdir $(patsubst %/,%,$(INPUT)))
OUTPUT ?= out/$(basename $(INNAME))_$(STYLE)$(suffix $(INNAME))
ARGS   ?=

.PHONY: run test venv venv-dev clean

# What `make run` needs: the package and its dependencies (no PyTorch, no test tools).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# The tests also run the PyTorch engine on the CPU (--device torch-cpu): the CPU build is
# pinned before the extras, so the extras do not pull a multi-GB CUDA build onto CI.
# ndi: the NDI sink's tests receive its stream back through cyndilib; ray: run_video --ray
# on a local Ray.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,web,ndi,ray]'
	touch $@

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

run: venv
	@mkdir -p $(dir $(OUTPUT))
	$(PY) run_video.py $(INPUT) -o $(OUTPUT) --style $(STYLE) --fetch -y $(ARGS)

# The tests run against the test store (real weights, media and reference outputs).
test: venv-dev
	TOONSTREAM_MODELS="$${TOONSTREAM_MODELS:-$(TEST_MODELS)}" $(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) out
