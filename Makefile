# Two commands do all the set-up on a fresh machine:
#   make repro   -> build .venv, run the DVC pipeline (embedded default), build the report
#   make test    -> build .venv, run the test suite (what .ci/run calls)
#   make lab     -> register the "Python (mmscale)" kernel, JupyterLab on the project root
#                   (from a subdirectory: make -C <project root> lab)
# GPU users: make repro TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE    ?= default
EXTRAS     ?= all
PYTEST_ARGS ?=

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.mmscale-installed

.PHONY: install repro test lab site clean-venv

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned (overridable), then the package; the constraint keeps pip
# from replacing that torch (or picking a torchvision built for another one).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install --quiet -c $(VENV)/torch-constraint.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# `dvc repro` runs the profile named in params.yaml (default); another profile is
# selected with DVC's parameter override (which writes it into params.yaml).
repro: $(STAMP)
ifeq ($(PROFILE),default)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
else
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc exp run -S profile=$(PROFILE)
endif
	$(VENV)/bin/mmscale site --strict

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lab: $(STAMP)
	$(PY) -m ipykernel install --user --name mmscale --display-name "Python (mmscale)"
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --FileContentsManager.preferred_dir=notebooks

site: $(STAMP)
	$(VENV)/bin/mmscale site

clean-venv:
	rm -rf $(VENV)
