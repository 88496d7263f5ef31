# driftloop: the README's two commands are `make demo` and `make test` (`make lint`: the CI's static checks).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the local broker also listens with SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256/512) on 9094 (tests/integration/test_sasl.py)
export KAFKA_SASL ?= 1
# ... and with SSL on 9095 and SASL_SSL on 9096, dev CA in .kafka/tls (tests/integration/test_tls.py)
export KAFKA_TLS ?= 1

.PHONY: setup demo test test-unit lint kafka-start kafka-stop pg-start pg-stop mlflow-start mlflow-stop bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools
	$(BIN)/python -m pip install -q -e ".[test,demo,lint]"   # demo: River, for `driftloop demo`'s data; lint: make lint; test: the MLflow client
	touch $(STAMP)

setup: $(STAMP)

kafka-start: setup
	bash scripts/kafka.sh start

kafka-stop:
	bash scripts/kafka.sh stop

pg-start:
	bash scripts/postgres.sh start

pg-stop:
	bash scripts/postgres.sh stop

## The MLflow tracking server of the MLflow-backend tests (the full mlflow in .mlflow-venv, made on first use).
mlflow-start:
	bash scripts/mlflow.sh start

mlflow-stop:
	bash scripts/mlflow.sh stop

## The whole loop on a local broker (a broker this target starts, it stops again).
demo: setup
	@if bash scripts/kafka.sh status >/dev/null 2>&1; then \
		$(BIN)/driftloop demo; \
	else \
		bash scripts/kafka.sh start && { $(BIN)/driftloop demo; rc=$$?; bash scripts/kafka.sh stop; exit $$rc; }; \
	fi

## Every test, against the real local Kafka broker, PostgreSQL and MLflow server (each started if
## needed), on TEST_WORKERS pytest-xdist workers, one test file per worker at a time. The tests
## mostly wait (on the broker, rebalances, child processes), so more workers than cores pay; each
## test has its own topics, groups, stores and ports, and the broker-fault tests their own broker.
## TEST_WORKERS=0: serial.
TEST_WORKERS ?= 3
test: kafka-start pg-start mlflow-start
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## Pure-logic tests only (no broker).
test-unit: setup
	$(BIN)/python -m pytest -m "not kafka and not postgres and not mlflow"

## Static checks, all run even if one fails (configuration in pyproject.toml): ruff (rule set and why
## there), mypy (typed public API), lint-imports (the layers), and a reason on every noqa / type: ignore.
lint: setup
	@rc=0; \
	echo "lint: ruff"; $(BIN)/ruff check . || rc=1; \
	echo "lint: mypy"; $(BIN)/mypy || rc=1; \
	echo "lint: lint-imports"; $(BIN)/lint-imports || rc=1; \
	echo "lint: suppressions"; $(BIN)/python scripts/check_suppressions.py || rc=1; \
	exit $$rc

bench: kafka-start
	$(BIN)/python bench/ingest.py

CHAOS_MINUTES ?= 2
chaos: setup  # the chaos run on both stores (root: it mounts a tmpfs); CI runs the SQLite one
	$(BIN)/python bench/chaos.py --store sqlite --minutes $(CHAOS_MINUTES) --seed 12
	$(BIN)/python bench/chaos.py --store postgres --minutes $(CHAOS_MINUTES) --seed 12

clean:
	rm -rf $(VENV) .kafka .pg .mlflow .mlflow-venv *.egg-info
