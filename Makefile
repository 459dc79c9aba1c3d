# Two commands do all the set-up on a fresh machine:
#   make repro   -> build .venv, run the DVC pipeline (embedded default), build the report
#   make test    -> build .venv, run the test suite (what .ci/run calls)
#   make lab     -> register the "Python (mmscale)" kernel, JupyterLab on the project root
#                   (from a subdirectory: make -C <project root> lab)
# The venv gets the exact versions of requirements.lock; LOCK=0 resolves pyproject.toml's ranges.
# GPU users: make repro TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PROFILE    ?= default
EXTRAS     ?= all
LOCK       ?= 1
PYTEST_ARGS ?=
# test workers (pytest-xdist): one per core; TEST_WORKERS=0 runs the suite in this one process
TEST_WORKERS ?= auto

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.mmscale-installed
# requirements.lock: the exact versions the embedded default ran with (this platform); LOCK=0
# installs from pyproject.toml's ranges instead
LOCK_FILE := requirements.lock
ifeq ($(LOCK),1)
LOCK_ARGS := -c $(LOCK_FILE)
endif
# the tool `make repro` runs (a test substitutes `echo` to check the profile logic); `mmscale
# repro` puts its own venv's bin first on PATH for the stages' `mmscale` and `dvc`
MMSCALE ?= $(VENV)/bin/mmscale
# the profile params.yaml names now (what the workspace's outputs were made with)
CURRENT_PROFILE = $(shell sed -n 's/^profile:[[:space:]]*\([A-Za-z0-9_-]*\).*/\1/p' params.yaml)

.PHONY: install repro test lab site clean-venv

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned (overridable), then the package; the constraint keeps pip
# from replacing that torch (or picking a torchvision built for another one).
$(STAMP): pyproject.toml $(LOCK_FILE) | $(PY)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install --quiet -c $(VENV)/torch-constraint.txt $(LOCK_ARGS) -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# The profile is explicit both ways: `make repro` is the default profile, `make repro
# PROFILE=smoke` the smoke one, whatever a previous run left in params.yaml: `mmscale repro
# --profile` first writes the profile into params.yaml's `profile:` line (what `dvc exp run -S`
# would do), so that file always says which profile the workspace's outputs come from; then it
# runs the stale DVC stages, independent ones side by side on JOBS cores (mmscale_core/repro.py;
# plain `dvc repro` computes the same, one stage at a time).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

repro: $(STAMP)
	@echo "make repro: profile $(PROFILE) (params.yaml had: $(CURRENT_PROFILE); pick another with PROFILE=NAME)"
	@$(MMSCALE) repro --profile $(PROFILE) --jobs $(JOBS)
	@$(MMSCALE) site --strict

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lab: $(STAMP)
	$(PY) -m ipykernel install --user --name mmscale --display-name "Python (mmscale)"
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --FileContentsManager.preferred_dir=notebooks

site: $(STAMP)
	$(VENV)/bin/mmscale site

clean-venv:
	rm -rf $(VENV)
