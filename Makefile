# Two commands a fresh machine needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch: an unpinned torch would pull several GB of CUDA packages.
TORCH := torch==2.13.0
DEMO_DATA := .steward-demo

.PHONY: demo test test-unit coverage test-weekend test-at bench-answers bench-ranking lint types unit image image-offline image-test bench-image bench-knowledge bench-slack bench-actions bench-agents bench-drift bench-events bench-events-soak bench-retrieval-server bench-scale-out clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed once per change of pyproject.toml; torch first so the pin is met by the CPU wheel.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	STEWARD_DATA_DIR=$(DEMO_DATA) $(BIN)/steward ingest knowledge/
	@echo
	@echo '$$ steward ask "How do I roll back a production model, and who has to approve it?"'
	@STEWARD_DATA_DIR=$(DEMO_DATA) $(BIN)/steward ask "How do I roll back a production model, and who has to approve it?"
	@echo
	@echo '$$ steward ask "What PSI value counts as drift on a feature?"'
	@STEWARD_DATA_DIR=$(DEMO_DATA) $(BIN)/steward ask "What PSI value counts as drift on a feature?"
	@echo
	@echo '$$ steward ask "An API key leaked in a Git commit. What do I do first?"'
	@STEWARD_DATA_DIR=$(DEMO_DATA) $(BIN)/steward ask "An API key leaked in a Git commit. What do I do first?"
	@echo
	@echo '# Guarded actions: a production rollback in a local Slack workspace, run on a local MLflow registry'
	@HF_HUB_OFFLINE=1 $(BIN)/python -m deploy.demo.guarded_actions --data-dir $(DEMO_DATA)
	@echo
	@echo '# An AI agent (LangGraph, a scripted model) asks for a rollback through the agent API and waits for people'
	@HF_HUB_OFFLINE=1 $(BIN)/python -m deploy.demo.agent_actions --data-dir $(DEMO_DATA)
	@echo
	@echo '# The drift digest (digests.yaml) over a generated prediction log that drifts from 2026-10-29'
	@$(BIN)/python -m bot.demo.predictions $(DEMO_DATA)/predictions
	@echo '$$ steward digest run model-drift --at 2026-11-05'
	@STEWARD_DATA_DIR=$(DEMO_DATA) HF_HUB_OFFLINE=1 $(BIN)/steward digest run model-drift --at 2026-11-05

lint: $(VENV)/.installed
	$(BIN)/ruff check bot ingest tests bench deploy
	$(BIN)/ruff format --check bot ingest tests bench deploy

types: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/pytest

# The fast tier: in-process tests only; every test has one tier (tests/support/tiers.py), so
# `pytest -m slack`, `-m integration` and `-m deploy` pick the others.
test-unit: $(VENV)/.installed
	$(BIN)/pytest -q -m unit

# libfaketime, built from Debian's source (Debian 12's own 0.9.10 hangs Python's timed locks)
FAKETIME_LIB := $(VENV)/faketime/libfaketime.so.1
$(FAKETIME_LIB):
	tests/clock/build-libfaketime.sh $(VENV)/faketime

# lint, types, import contracts and tests in one command; then the tests whose outcome once hung on the weekday, again,
# with the machine's clock moved into the starter weekend freeze. The whole suite runs: the unit and slack tiers
# under coverage (its summary by package is printed), the integration and deploy tiers without (subprocesses,
# replicas and containers are not measured); both parts run even when the first fails.
test: $(VENV)/.installed $(FAKETIME_LIB)
	$(BIN)/ruff check bot ingest tests bench deploy
	$(BIN)/ruff format --check bot ingest tests bench deploy
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/coverage erase
	failed=0; \
	$(BIN)/coverage run -m pytest -m "unit or slack" || failed=1; \
	$(BIN)/pytest -m "integration or deploy" || failed=1; \
	$(BIN)/python -m tests.support.coverage_summary; \
	exit $$failed
	$(MAKE) --no-print-directory test-weekend

# the coverage of the unit and slack tiers alone, file by file (make test prints the summary by package)
coverage: $(VENV)/.installed
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -q -m "unit or slack"
	$(BIN)/coverage report --skip-covered --sort=cover

# Approvals, faults, scale-out, the demo and the digests at a Saturday noon in Berlin (inside the
# starter freeze): no test may depend on the day it runs.
WEEKEND ?= 2026-12-12 12:00
CLOCK_TESTS := tests/test_approvals.py tests/test_approval_rules.py tests/test_slack_actions.py \
	tests/test_faults.py tests/test_scale_out.py tests/test_demo.py tests/test_event_recovery.py \
	tests/test_digest_drift.py tests/test_digest_failures.py tests/test_digest_governance.py \
	tests/test_digest_incidents.py tests/test_slack_digests.py tests/test_clock.py
test-weekend: $(VENV)/.installed $(FAKETIME_LIB)
	$(BIN)/python -m tests.clock.at "$(WEEKEND)" --zone Europe/Berlin -- $(BIN)/pytest -q $(CLOCK_TESTS)

# The whole suite at any Berlin wall-clock time: make test-at AT="2026-12-14 07:59"
test-at: $(VENV)/.installed $(FAKETIME_LIB)
	@test -n "$(AT)" || { echo 'give the time: make test-at AT="2026-12-14 07:59"'; exit 2; }
	$(BIN)/python -m tests.clock.at "$(AT)" --zone Europe/Berlin -- $(BIN)/pytest -q

# The container image (deploy/docker/Dockerfile) and the tests that run it with a Docker engine
IMAGE ?= steward:dev
image:
	deploy/docker/build.sh $(IMAGE)

# where Docker Hub and download.pytorch.org cannot be reached (see deploy/docker/build.sh)
image-offline:
	deploy/docker/build.sh --offline $(IMAGE)

image-test: $(VENV)/.installed
	STEWARD_TEST_IMAGE=$(IMAGE) $(BIN)/pytest tests/test_image.py tests/test_compose.py -v

# the image against the same code from the virtual environment (build the image first)
bench-image: $(VENV)/.installed
	$(BIN)/python -m bench.image --image $(IMAGE) --repeat 5

# What the reader sees: excerpt methods and the confidence model, chosen on folds (needs an index of
# ../shared/corpora in EVAL_DATA: STEWARD_DATA_DIR=$(EVAL_DATA) steward ingest ../shared/corpora)
EVAL_DATA ?= /tmp/evaldata
bench-answers: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.answers --data-dir $(EVAL_DATA) --questions ../shared/eval/dev.jsonl

bench-ranking: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ranking --data-dir $(EVAL_DATA) --questions ../shared/eval/dev.jsonl

bench-knowledge: $(VENV)/.installed
	$(BIN)/python -m bench.knowledge --corpora ../shared/corpora --questions ../shared/eval/dev.jsonl --repeat 3 --compare-embedded 128,256

bench-slack: $(VENV)/.installed
	$(BIN)/python -m bench.slack --rate 50 --seconds 30 --channels 50 --duplicate-every 10 --latency-events 40

# Needs PostgreSQL (the replicas share it); a private schema is created and dropped.
STEWARD_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
bench-actions: $(VENV)/.installed
	$(BIN)/python -m bench.action_requests --requests 1000 --channels 50 --latency-requests 20 --postgres $(STEWARD_TEST_POSTGRES_URL)

bench-agents: $(VENV)/.installed
	$(BIN)/python -m bench.agent_requests --requests 500 --agents 20 --channels 50 --idle-requests 100 --latency-requests 20 --postgres $(STEWARD_TEST_POSTGRES_URL)

bench-drift: $(VENV)/.installed
	$(BIN)/python -m bench.drift --rows 1000000 --columns 50 --repeat 3 --samples 100

clean:
	rm -rf $(VENV) $(DEMO_DATA) .pytest_cache .mypy_cache .ruff_cache .coverage

bench-events: $(VENV)/.installed
	$(BIN)/python -m bench.events --rate 50 --seconds 300 --drain 300 \
		--postgres $${STEWARD_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}

# below the two replicas' capacity (about 35 a second here) for 20 minutes: memory with no backlog
bench-events-soak: $(VENV)/.installed
	$(BIN)/python -m bench.events --rate 25 --seconds 1200 --drain 120 \
		--postgres $${STEWARD_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		--out bench/results/events-soak.json

bench-retrieval-server: $(VENV)/.installed
	$(BIN)/python -m bench.retrieval_server --chunks 100000 --rounds 5

bench-scale-out: $(VENV)/.installed
	STEWARD_TEST_POSTGRES_URL=$${STEWARD_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(BIN)/python -m bench.scale_out --requests 200
