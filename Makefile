# The README quotes these targets. `make test` and `make reproduce` set everything up on a fresh machine.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
PAPER ?=
CONFIG ?= small
OUT ?= build/reproduce/$(PAPER)/$(CONFIG)
PAPER_REQS := $(wildcard papers/*/requirements.txt)

.PHONY: help setup data test lint contracts unit smoke reproduce publish-results bench gpu-check new-paper lock clean check-paper

help:
	@echo "make setup                              .venv, the project and its envs, the offline data"
	@echo "make test                               set-up, lint, import contracts, unit tests, every paper's smoke run"
	@echo "make reproduce PAPER=<name> [CONFIG=small] [OUT=dir]  a paper's reproduction into build/reproduce/<name>/<config>/"
	@echo "make publish-results PAPER=<name> [CONFIG=small]  copy that run into papers/<name>/results/<config>/ (clean tree only)"
	@echo "make gpu-check [DRY_RUN=1]              every paper's paper config shape for a few steps on CUDA -> build/gpu-check/report.md"
	@echo "make smoke PAPER=<name>                 one paper's smoke run (no PAPER: all)"
	@echo "make bench PAPER=<name>                 a paper's benchmark"
	@echo "make new-paper NAME=<name>              a new paper folder from the template"
	@echo "make lint                               ruff"
	@echo "papers: $$(python3 ci/paper_list.py)"

setup: $(STAMP) data

$(STAMP): pyproject.toml envs/base.txt envs/torch.txt envs/jax.txt envs/constraints.txt $(PAPER_REQS)
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c envs/constraints.txt -r envs/base.txt -r envs/torch.txt -r envs/jax.txt $(addprefix -r ,$(PAPER_REQS))
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Data: idempotent; a data set that cannot be fetched (e.g. apt without root) is reported and the rest goes on.
data: $(STAMP)
	@PYTHON=$(PY) bash ci/fetch_data.sh || echo "make setup: some data sets are missing (see above); papers that need them will say so"

lint: $(STAMP)
	.venv/bin/ruff check .

contracts: $(STAMP)
	@mkdir -p build
	$(PY) ci/gen_importlinter.py > build/importlinter.ini
	.venv/bin/lint-imports --config build/importlinter.ini --no-cache

unit: setup
	$(PY) -m pytest -m "not smoke" -q

test: setup lint contracts unit
	$(PY) ci/smoke.py

smoke: setup
	@test -z "$(PAPER)" || python3 ci/paper_list.py $(PAPER)
	$(PY) ci/smoke.py $(PAPER)

# A bad PAPER fails here, before any set-up, with the list of papers.
check-paper:
	@test -n "$(PAPER)" || { echo "usage: make $(MAKECMDGOALS) PAPER=<name>; papers: $$(python3 ci/paper_list.py)"; exit 2; }
	@python3 ci/paper_list.py $(PAPER)

reproduce: check-paper setup
	@test -f papers/$(PAPER)/configs/$(CONFIG).yaml || { echo "no config papers/$(PAPER)/configs/$(CONFIG).yaml; have: $$(ls papers/$(PAPER)/configs)"; exit 2; }
	$(PY) -m papers.$(PAPER).reproduce --config papers/$(PAPER)/configs/$(CONFIG).yaml --out $(OUT)

# Committed results change only here: from a clean tree, from a run that was itself made from a clean tree.
publish-results: check-paper
	python3 ci/publish_results.py $(PAPER) $(CONFIG)

gpu-check: $(if $(DRY_RUN),,setup)
	$(if $(wildcard $(PY)),$(PY),python3) ci/gpu_check.py $(if $(DRY_RUN),--dry-run) $(if $(EXTRA),--extra)

bench: check-paper setup
	$(PY) -m papers.$(PAPER).bench --config papers/$(PAPER)/configs/small.yaml --out build/bench/$(PAPER)

new-paper:
	@test -n "$(NAME)" || { echo "usage: make new-paper NAME=<name>"; exit 2; }
	python3 ci/new_paper.py $(NAME)

# Record the exact versions installed here as the constraints CI installs with (torch is pinned in envs/torch.txt).
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v -e '^torch==' -e '^ml-papers' > envs/constraints.txt

clean:
	rm -rf build .pytest_cache .ruff_cache
