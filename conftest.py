"""Fixtures every test of the repository may use: real FerretDB, RabbitMQ and the whole system."""

pytest_plugins = ["tests.support.fixtures", "tests.support.contract"]


def pytest_configure(config) -> None:  # noqa: ANN001 (pytest's hook)
    """Give every test session a temporary directory of its own.

    pytest numbers sessions under one shared root and deletes all but the newest three, so two
    sessions at once (make test beside another checkout's make test) could delete each other's
    FerretDB and RabbitMQ state mid-run. A private base is removed after a passing run and kept,
    for its logs, after a failing one.
    """
    if config.option.basetemp is None:
        import tempfile

        config.option.basetemp = tempfile.mkdtemp(prefix="taskflow-tests-")
        config._taskflow_private_basetemp = True


def pytest_unconfigure(config) -> None:  # noqa: ANN001 (pytest's hook)
    if getattr(config, "_taskflow_private_basetemp", False) and getattr(config, "_taskflow_passed", False):
        import shutil

        shutil.rmtree(config.option.basetemp, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001 (pytest's hook)
    session.config._taskflow_passed = exitstatus == 0
