# Two entry points do all the set-up on a fresh Debian 12 machine (as root):
#   make demo   - install, then run the scripted demo against a real host process
#   make test   - install, then ruff + mypy + the whole pytest suite
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := libpcsclite-dev pcscd vsmartcard-vpcd tshark graphviz socat iproute2 postgresql chromium fonts-wqy-microhei fonts-dejavu-core
STAMP_APT := $(VENV)/.apt-done
STAMP_PY := $(VENV)/.deps-done
# pip's own progress bars when a person watches a terminal; quiet in CI and logs
PIP_QUIET := $(shell test -t 2 || echo --quiet)

.PHONY: demo test lint typecheck pytest bench setup clean diagram screens

setup: $(STAMP_APT) $(STAMP_PY)

$(STAMP_APT):
	@bash scripts/install-debian-packages.sh $(APT_PACKAGES)
	@mkdir -p $(VENV) && touch $@

$(STAMP_PY): pyproject.toml | $(STAMP_APT)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip
	$(BIN)/pip install $(PIP_QUIET) -e '.[pcsc,face,dev]'
	# face_recognition's own metadata pins a dlib that compiles for ~an hour; dlib-bin provides it prebuilt
	$(BIN)/pip install --quiet --no-deps face-recognition==1.3.0
	@touch $@

demo: setup
	$(BIN)/atm demo

SOURCES := atm atm_common host_link terminal sim tests bench

lint: setup
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/python bench/bench_withdrawal.py
	$(BIN)/python bench/bench_host_auth.py
	$(BIN)/python bench/bench_host_history.py
	$(BIN)/python bench/bench_face.py
	$(BIN)/python bench/bench_soak.py

screens: setup
	$(BIN)/python -m tests.kiosk.gallery docs/screens

diagram: setup
	$(BIN)/atm fsm --diagram docs/customer-fsm.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
