# Dynamic Filters: from equations to kernels -- set-up, tests, book, JupyterLab.
#
#   make lab     open the book in JupyterLab       (PORT=8888 TOKEN= NO_BROWSER=)
#   make test    unit tests, every chapter and exercise notebook, the book's structure
#   make book    build the HTML book, executing every notebook (build/book/_build/html)
#   make experiments   re-record every experiment's full run (hours; EXPERIMENT=name for one)
#   make clean   remove build outputs; `make distclean` also removes .venv
#
# Every target first runs `setup`, which creates .venv and installs everything, and is a
# no-op once .venv is up to date with pyproject.toml.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
# A recipe is one bash script (run with -eu -o pipefail): the first failing command fails it.
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
# The local CPU wheel, installed before anything else: an unpinned torch would pull
# gigabytes of CUDA packages.
TORCH := torch==2.13.0
# Where this environment's JupyterLab looks for default settings ($(VENV)/etc/jupyter is on
# its config path and on no other installation's).
LAB_OVERRIDES := $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json

BUILD := build
NB_BUILD := $(BUILD)/notebooks
BOOK_OUT := $(BUILD)/book
CHECK_OUT := $(BUILD)/book-check
# Seconds per notebook cell in `make test` (nbval's default is 2000).
CELL_TIMEOUT ?= 600

PORT ?= 8888
TOKEN ?=
NO_BROWSER ?=
LAB_PAGE ?= chapters/00_preface.md
LAB_FLAGS := --port=$(PORT) \
	--ServerApp.root_dir='$(CURDIR)' --LabApp.default_url=/lab/tree/$(LAB_PAGE) \
	$(if $(TOKEN),--IdentityProvider.token='$(TOKEN)') \
	$(if $(NO_BROWSER),--no-browser) \
	$(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: help setup lab test test-unit test-notebooks test-book book experiments clean distclean

help:
	@sed -n '3,8p' Makefile | sed 's/^# \{0,1\}//'

setup: $(STAMP)

# Re-run when the dependencies change, and once the package exists (an editable install made
# before dyncore/__init__.py existed would not map it). The last two steps make JupyterLab open
# text notebooks (.md with a jupytext header) as notebooks by default, and not ask about news.
$(STAMP): pyproject.toml $(wildcard dyncore/__init__.py)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar off '$(TORCH)'
	$(BIN)/python -m pip install --progress-bar off -e '.[dev,book]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3
	$(BIN)/jupytext-config --settings-file $(LAB_OVERRIDES) set-default-viewer markdown myst
	$(BIN)/python -c 'import json, sys; p = sys.argv[1]; s = json.load(open(p)); \
		s["@jupyterlab/apputils-extension:notification"] = {"fetchNews": "false", "checkForUpdates": False}; \
		json.dump(s, open(p, "w"), indent=2)' $(LAB_OVERRIDES)
	touch $@

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS)

test: test-unit test-notebooks test-book

test-unit: setup
	$(BIN)/python -m pytest tests

# nbval runs only .ipynb files, and starts each notebook's kernel in the notebook's folder.
# So the text notebooks are converted into a mirror of the repository: $(NB_BUILD)/chapters/
# holds the converted chapters next to links to everything else in chapters/, and $(NB_BUILD)
# links to the repository's other entries. A notebook thus runs in a folder that looks like
# its own: `import dyncore`, ../dyncore, ../pyproject.toml or solutions/ all resolve.
test-notebooks: setup
	rm -rf $(NB_BUILD)
	mkdir -p $(NB_BUILD)
	shopt -s nullglob
	for entry in *; do
		case $$entry in
			$(BUILD)|chapters|exercises) ;;
			*) ln -s '$(CURDIR)'/$$entry $(NB_BUILD)/$$entry ;;
		esac
	done
	for dir in chapters exercises; do
		mkdir -p $(NB_BUILD)/$$dir
		for entry in $$dir/*; do
			case $$entry in
				*.md) $(BIN)/jupytext --quiet --to ipynb --output $(NB_BUILD)/$${entry%.md}.ipynb $$entry ;;
				*) ln -s '$(CURDIR)'/$$entry $(NB_BUILD)/$$entry ;;
			esac
		done
	done
	cp tests/nbval_patience.py $(NB_BUILD)/conftest.py
	notebooks=($(NB_BUILD)/chapters/*.ipynb $(NB_BUILD)/exercises/*.ipynb)
	if (( $${#notebooks[@]} == 0 )); then echo "no notebooks to test"; exit 0; fi
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=$(CELL_TIMEOUT) "$${notebooks[@]}"

# Structure check: the book built with execution off (a copy of book/_config.yml with
# execute_notebooks: off) and warnings as errors.
test-book: setup
	rm -rf $(CHECK_OUT)
	mkdir -p $(CHECK_OUT)
	$(BIN)/python -c 'import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
		c["execute"]["execute_notebooks"] = "off"; yaml.safe_dump(c, open(sys.argv[2], "w"))' \
		book/_config.yml $(CHECK_OUT)/_config.yml
	$(BIN)/jupyter-book build . --config '$(CURDIR)'/$(CHECK_OUT)/_config.yml \
		--toc '$(CURDIR)'/book/_toc.yml --path-output $(CHECK_OUT) -W --keep-going -q

# The book's source folder is the repository root, so that chapters/ and exercises/ are in it;
# the configuration lives in book/. (Absolute paths: jupyter-book 1.0.4 rejects a relative
# --toc.) --all: every page is re-read, so every notebook is executed with the current dyncore.
# The first failing notebook stops the build, with its name and the failing cell
# (nb_execution_raise_on_error in book/_config.yml; no --keep-going).
book: setup
	$(BIN)/jupyter-book build . --config '$(CURDIR)'/book/_config.yml \
		--toc '$(CURDIR)'/book/_toc.yml --path-output $(BOOK_OUT) --all -W
	echo "The book: $(BOOK_OUT)/_build/html/index.html"

# The chapters' experiments, recorded in results/experiments/ (python -m dyncore.experiments).
EXPERIMENT ?=
JOBS ?= 1
experiments: setup
	$(BIN)/python -m dyncore.experiments run $(if $(EXPERIMENT),$(EXPERIMENT),--all) --jobs $(JOBS)

clean:
	rm -rf $(BUILD) _build .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
		\( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) *.egg-info
