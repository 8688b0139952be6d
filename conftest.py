"""Fixtures every test of the repository may use: real FerretDB, RabbitMQ and the whole system."""

pytest_plugins = ["tests.support.fixtures"]
