"""Fixtures of the ops area: the base image the hosts run (its Python picks the wheels)."""

from __future__ import annotations

from tests.roles.conftest import base_image  # noqa: F401 - the same check as the role tests
