# TaskFlow: `make run` starts the whole system on this machine, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTEST_ARGS ?=

.PHONY: help bootstrap run reload test chaos lock bench up down

help:
	@echo "make run        the whole system on this machine (gateway on :8000); Ctrl-C stops it"
	@echo "make reload     restart every instance of every service of a running make run, one at a time"
	@echo "make test       every test, against real FerretDB, RabbitMQ, gunicorn and nginx"
	@echo "make chaos      the chaos test's long form: 10 minutes of faults under steady writes (CHAOS_MINUTES)"
	@echo "make bootstrap  install what is missing for run and test (Debian packages, virtualenv, FerretDB, test tools)"
	@echo "make bench      the benchmark report: bench/results/<time>.json and docs/benchmarks.md (~45 min)"
	@echo "make lock       re-pin requirements/constraints.txt from a fresh resolution"
	@echo "make up         the whole system in Docker Compose with Kong, Redis, MongoDB, RabbitMQ, Jaeger, Mailpit"
	@echo "make down       stop and remove the Compose containers (the data volumes stay)"

bootstrap:
	scripts/bootstrap test

run:
	scripts/run

reload:
	scripts/reload

test: bootstrap
	.venv/bin/pytest $(PYTEST_ARGS)

chaos: bootstrap
	CHAOS_FORM=long .venv/bin/pytest -m chaos $(PYTEST_ARGS)

lock:
	scripts/lock

bench:
	bench/run

# Docker Compose reads the secrets from deploy/compose.env (not committed).
COMPOSE := docker compose --env-file deploy/compose.env

up: deploy/compose.env deploy/secrets/jwt-private-key.pem deploy/secrets/email-link.key
	$(COMPOSE) up --build

down: deploy/compose.env
	$(COMPOSE) down

deploy/compose.env:
	@echo "copy deploy/compose.env.example to deploy/compose.env and set its passwords first" >&2
	@exit 1

# A signing key of this host's own. The directory is private to you; the file must stay readable
# by the containers' user, which sees only the file.
deploy/secrets/jwt-private-key.pem:
	install -d -m 700 deploy/secrets
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $@
	chmod 644 $@

# The key auth and notify derive email-verification link tokens with (32 random bytes, hex).
deploy/secrets/email-link.key:
	install -d -m 700 deploy/secrets
	openssl rand -hex 32 > $@
	chmod 644 $@
