"""Shared fixtures for the test suite."""

import pytest

from helpers import make_params


@pytest.fixture
def params():
  return make_params()

# tests/data holds test data and the script that made the EMA reference
# values with torch (not a dependency): never collected as tests.
collect_ignore = ["data"]
