"""Shared fixtures for the test suite, and one compilation cache per session.

Most of the suite's time is XLA compiling small programs, and many tests (in
both xdist workers, in the subprocesses and notebook kernels the tests start)
compile the same ones.  The session gets one JAX persistent compilation cache
in a fresh temporary folder: a program compiled once is loaded, not compiled
again, by the next process that needs it.  Nothing carries over from one
session to the next (the folder is deleted at the end), and a cache hit runs
the very executable a compilation would have made, so no result changes.
A ``JAX_COMPILATION_CACHE_DIR`` already set is left alone.
"""

import faulthandler
import os
import shutil
import tempfile

import jax
import pytest

from helpers import make_params

_CACHE_ENV = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
              "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def pytest_configure(config):
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    folder = tempfile.mkdtemp(prefix="ftrl-adam-tests-xla-cache-")
    config.stash[_CACHE_KEY] = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ.update(_CACHE_ENV)
  # Workers and subprocesses read the environment when they import JAX; this
  # process may have imported it already.
  jax.config.update("jax_compilation_cache_dir",
                    os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  folder = config.stash.get(_CACHE_KEY, None)
  if folder is not None:
    shutil.rmtree(folder, ignore_errors=True)


_CACHE_KEY = pytest.StashKey[str]()


# Files whose tests run for tens of seconds each (notebooks, fresh
# processes, whole documents): started first, so that the two workers end
# together instead of one waiting on a long test picked up at the end.
_LONG_FIRST = ("test_notebooks.py", "test_docs_examples.py", "test_install.py",
               "test_interrupts.py", "test_docs_build.py",
               "test_beta_grid_open.py", "test_studies.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return _LONG_FIRST.index(name) if name in _LONG_FIRST else len(_LONG_FIRST)
  items.sort(key=rank)     # stable: the order within a rank is kept


@pytest.fixture(autouse=True)
def _no_test_hangs():
  """A test still running after 10 minutes is a hang, not a slow test: the
  tracebacks of every thread are printed and the process ends (xdist reports
  the test as failed and goes on with a new worker), so a hang can never eat
  the CI's time."""
  faulthandler.dump_traceback_later(600, exit=True)
  yield
  faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def params():
  return make_params()

# tests/data holds test data and the script that made the EMA reference
# values with torch (not a dependency): never collected as tests.
collect_ignore = ["data"]
