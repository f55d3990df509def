# videobgm: `make help` lists the targets. Everything runs inside .venv, created on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= auto
BENCH_ARGS ?=
REPORTS_ARGS ?=
APP_ARGS ?=
# pytest-xdist workers for make test ("auto": one per core, 0: one process); tests/conftest.py
# keeps each file on one worker and the notebooks in order on one.
TEST_WORKERS ?= auto
export PATH := $(abspath $(BIN)):$(PATH)
# Tests never touch the model hub; the library builds its tiny models locally.
TEST_ENV := VIDEOBGM_PROFILE=tiny HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg OMP_WAIT_POLICY=PASSIVE

.DEFAULT_GOAL := help
.PHONY: help setup test lint format demo reports eval bench sample app clean mutants

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: here it is a local CPU wheel; unpinned it would pull CUDA builds.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the package with its [dev] extra (idempotent)

lint: $(STAMP) ## ruff lint + format check, notebook hygiene
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint ## lint, then every test and every notebook (nbval) with the tiny offline models
	$(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests notebooks --nbval-lax --nbval-current-env

demo: $(STAMP) ## run the main job on the demo sample, outputs under reports/ and runs/
	$(BIN)/python -m videobgm.demo --profile $(PROFILE)

reports: $(STAMP) ## execute every notebook with papermill into reports/ (PROFILE=auto|tiny|pretrained; REPORTS_ARGS="--only 04")
	$(BIN)/python -m videobgm.reports --profile $(PROFILE) $(REPORTS_ARGS)

eval: $(STAMP) ## notebook 06 into reports/: does the music fit the emotion? (CLAP alignment, FAD)
	$(BIN)/python -m videobgm.reports --profile $(PROFILE) --only 06

bench: $(STAMP) ## benchmarks: every stage against its baseline, results under reports/bench/ (BENCH_ARGS=--full)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m videobgm.bench $(BENCH_ARGS)

app: $(STAMP) ## serve the studio as a web app on http://127.0.0.1:8866 (APP_ARGS="--videos DIR --port N --host ADDR")
	$(BIN)/videobgm app --profile $(PROFILE) $(APP_ARGS)

# Mutation testing: the core functions, mutated one small change at a time, against the fast
# tests of [tool.mutmut] in pyproject.toml. mutmut wants the package at the top level, so it
# runs on a copy in build/mutation (results stay there; a re-run tests only the sampled mutants
# without a result, which includes those of functions that changed).
MUTATION_DIR := build/mutation
MUTANTS ?= videobgm.media.x_mux* $(addprefix videobgm.emotion.classifier.x_,segment_labels* viterbi_path* \
	_extend_neutral* timeline* _checked* _tile* postprocess* _piece* _span* _join* _coalesce* \
	_absorb* _strength*) $(addprefix videobgm.compose.renderer.x_,equal_power* stitch* _emit* _clip_gain* \
	_finisher* _crossfade_inside*) videobgm.mix.* videobgm.compose.plan.* videobgm.spectrogram.codec.* \
	!videobgm.spectrogram.codec.x_*cli* \
	videobgm.separate.*
# workers: the 2 cores here are shared
MUTATION_JOBS ?= 1
# mutants drawn per module (a uniform sample estimates the module's score; 0 = all of them), and
# the seed of the draw; MUTANT_RETRY=1 retests the sample's survivors too (after new tests),
# MUTANT_RERUN=1 every mutant of the sample
MUTANT_SAMPLE ?= 40
MUTANT_SEED ?= 19
# mutmut runs with one torch/OpenMP thread: it forks a worker per mutant, and a fork taken while
# torch's thread pool runs hangs until mutmut's time limit (every codec mutant "timed out" so)

mutants: $(STAMP) ## mutation score of the core modules (mutmut, a seeded sample per module; slow)
	mkdir -p $(MUTATION_DIR)
	rm -rf $(MUTATION_DIR)/videobgm $(MUTATION_DIR)/tests
	cp -r lib/videobgm tests pyproject.toml $(MUTATION_DIR)/
	cd $(MUTATION_DIR) && PYTHONPATH= $(abspath $(BIN))/python tests/mutation_score.py generate
	names=$$($(BIN)/python tests/mutation_score.py sample $(MUTATION_DIR)/mutants $(MUTANT_SAMPLE) \
		$(MUTANT_SEED) $(if $(MUTANT_RERUN),,--pending) $(if $(MUTANT_RETRY),--unkilled) \
		$(foreach m,$(MUTANTS),'$(m)')); \
	if [ -n "$$names" ]; then cd $(MUTATION_DIR) && VIDEOBGM_HOME=$(CURDIR) $(TEST_ENV) PYTHONPATH= \
		OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		nice -n 10 $(abspath $(BIN))/mutmut run --max-children $(MUTATION_JOBS) $$names || true; fi
	$(BIN)/python tests/mutation_score.py score $(MUTATION_DIR)/mutants $(MUTANT_SAMPLE) $(MUTANT_SEED) \
		$(foreach m,$(MUTANTS),'$(m)')

sample: $(STAMP) ## rebuild the demo sample in data/samples/ (needs espeak-ng)
	$(BIN)/python -m videobgm.sample

clean: ## remove generated outputs (keeps .venv and data/samples)
	rm -rf reports/* runs data/interim data/processed data/models/tiny .pytest_cache
