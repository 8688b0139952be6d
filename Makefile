# TaskFlow: `make run` starts the whole system on this machine, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTEST_ARGS ?=

.PHONY: help bootstrap run test lock

help:
	@echo "make run        the whole system on this machine (gateway on :8000); Ctrl-C stops it"
	@echo "make test       every test, against real FerretDB, RabbitMQ, gunicorn and nginx"
	@echo "make bootstrap  install what is missing (Debian packages, virtualenv, FerretDB)"
	@echo "make lock       re-pin requirements/constraints.txt from a fresh resolution"

bootstrap:
	scripts/bootstrap

run:
	scripts/run

test: bootstrap
	.venv/bin/pytest $(PYTEST_ARGS)

lock:
	scripts/lock
