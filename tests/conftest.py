"""Root of the test suite. `tests/infra` verifies a running environment and is collected only
when one is named (`--scalemart-env=dev`, as `make verify` does); `make test` reaches it through
the end-to-end tests, which bring the environment up first."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--scalemart-env", default=None, help="environment for tests/infra (dev, staging, production)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if "infra" in collection_path.parts and config.getoption("--scalemart-env") is None:
        return True
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # The end-to-end tests bring the dev environment up and keep it for their whole session: run
    # them last, so the other areas do not share the 2 cores with five idle hosts.
    items.sort(key=lambda item: "e2e" in item.path.parts)
