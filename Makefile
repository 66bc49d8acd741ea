# The words the README uses: `make demo`, `make test`, `make lint`.
# Everything runs in the project's own virtual environment (.venv): the machine's Python is left alone.
BASE_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed.stamp
export BASE_PYTHON

.PHONY: install demo test test-unit lint format clean schema brokers-start brokers-stop tools chart-check bench prerequisites

$(VENV)/bin/python:
	@scripts/prerequisites.sh demo
	$(BASE_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## prerequisites: say what the machine lacks for `make test`, and how to get it
prerequisites:
	@scripts/prerequisites.sh test

## demo: publish the sample results to a local Mosquitto; the consumer delivers them to a local API stand-in
demo: $(STAMP)
	@if [ "$(BROKERS)" = local ]; then scripts/brokers.sh start-mqtt >&2 && eval "$$(scripts/brokers.sh env)"; fi; \
	$(PYTHON) -m consumer demo

# Real brokers on loopback (scripts/brokers.sh). BROKERS=external uses KAFKA_BOOTSTRAP_SERVERS /
# MQTT_URL from the environment instead (or testcontainers where a Docker engine runs).
BROKERS ?= local
# The tests' own brokers: their own ports and state directory, started with the settings the tests
# need, so a broker started by hand or by `make demo` on the default ports is never reused by them.
# Mosquitto drops messages beyond max_queued_messages (default 1000) per client; the end-to-end
# tests publish 10 000-message bursts, as a site with a sized broker would (README: Operations).
TEST_BROKERS = BROKERS_STATE=/tmp/vision-events-test-brokers MQTT_PORT=21883 KAFKA_PORT=29092 \
	KAFKA_CONTROLLER_PORT=29093 KAFKA_SASL_PORT=29094 MQTT_MAX_QUEUED_MESSAGES=100000
WITH_BROKERS = if [ "$(BROKERS)" = local ]; then export $(TEST_BROKERS); \
	scripts/brokers.sh start >&2 && eval "$$(scripts/brokers.sh env)"; fi;

## test: every test (unit, integration against real brokers, end to end, chart, publisher examples)
test: $(STAMP) tools
	@scripts/prerequisites.sh test
	@$(WITH_BROKERS) $(PYTHON) -m pytest

## tools: helm, hadolint, kubernetes-validate, promtool, prometheus, the Kubernetes control plane and Benthos (the bench's peer), built or fetched once and cached
tools:
	bash scripts/install-tools.sh
	@scripts/build-benthos.sh

## chart-check: hadolint, helm lint/template of every ci/ scenario, offline manifest validation, promtool
chart-check: $(STAMP) tools
	@$(WITH_BROKERS) $(PYTHON) -m pytest tests/chart -q

## bench: throughput, latency, memory against the real local brokers, side by side with Benthos and a naive consumer (bench/README.md); BENCH_ARGS=--quick for a smoke run
bench: $(STAMP)
	@scripts/build-benthos.sh
	@$(WITH_BROKERS) $(PYTHON) -m bench $(BENCH_ARGS)

brokers-start:
	scripts/brokers.sh start

brokers-stop:
	scripts/brokers.sh stop
	export $(TEST_BROKERS); scripts/brokers.sh stop

test-unit: $(STAMP)
	$(PYTHON) -m pytest tests/unit

## lint: ruff, mypy strict, and the import layers (import-linter, [tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache *.egg-info

## schema: regenerate schemas/inference-message.schema.json from the envelope model
schema: $(STAMP)
	$(PYTHON) -c "import orjson; from consumer.envelope import envelope_json_schema as s; open('schemas/inference-message.schema.json','wb').write(orjson.dumps(s(), option=orjson.OPT_INDENT_2|orjson.OPT_SORT_KEYS)+b'\n')"
