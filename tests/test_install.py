"""``pip install .`` brings the optimizer only; the lab says which extra it needs.

The package is installed, without extras, into a brand-new virtual
environment (no pip of its own: this environment's pip installs into it with
``--python``) from a local folder of wheels, then trains with
``fa.ftrl_adam`` + ``fa.ema_params``; the lab's entry points there print one
line naming the ``lab`` extra.

The folder of wheels (the optimizer's dependencies as pyproject.toml lists
them, and setuptools to build the package) is downloaded once, through pip's
own cache, into ``~/.cache/ftrl-adam-tests/`` (or ``$FTRL_ADAM_WHEELHOUSE``),
keyed by those requirements and the Python version; after that the test
needs no network.  About 20 s of CPU, mostly unpacking jaxlib and importing
JAX for the first time (36-48 s wall on the 2 shared cores here).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import venv

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAB_DISTRIBUTIONS = {"flax", "matplotlib", "scikit-learn", "orbax-checkpoint",
                     "tensorstore"}
EXTRA_LINE = ('needs the lab extra (missing: flax, matplotlib, scikit-learn): '
              'pip install "ftrl-adam[lab]" (in a checkout: pip install ".[lab]")')

TRAIN = """
import importlib.util, jax, jax.numpy as jnp, optax
import ftrl_adam as fa
target = jnp.arange(4.0)
loss = lambda p: jnp.sum((p - target) ** 2)
tx = optax.chain(fa.ftrl_adam(0.1, b1=0.9, b2=0.99), fa.ema_params(0.9))
params = jnp.zeros(4)
state = tx.init(params)

@jax.jit
def step(params, state):
  updates, state = tx.update(jax.grad(loss)(params), state, params)
  return optax.apply_updates(params, updates), state

for _ in range(200):
  params, state = step(params, state)
assert loss(params) < 1e-2 * loss(jnp.zeros(4)), loss(params)
assert loss(fa.ema_params_of(state)) < 1e-1 * loss(jnp.zeros(4))
found = sorted(m for m in ("flax", "matplotlib", "sklearn", "orbax")
               if importlib.util.find_spec(m) is not None)

# The lab's entry points, in this process (the program itself is run apart).
import contextlib, io, json
from ftrl_adam import cli
said = {}
for argv in (["study", "--task", "quadratic"], ["bench", "step"]):
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    said[argv[0]] = [cli.main(argv), err.getvalue()]
try:
  import ftrl_adam.studies
except ImportError as e:
  said["import"] = str(e)
print(json.dumps({"found": found, "said": said}))
"""


def _requirements():
  """pyproject.toml's ``dependencies`` (the optimizer's), as written."""
  text = (ROOT / "pyproject.toml").read_text()
  block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
  return re.findall(r'"([^"]+)"', block)


def _pip(*args, python=sys.executable):
  return subprocess.run([python, "-m", "pip", "--disable-pip-version-check",
                         *args], capture_output=True, text=True, check=True)


def _wheelhouse(requirements):
  key = hashlib.sha256(json.dumps(
      [requirements, sys.version_info[:2], sys.platform]).encode()).hexdigest()
  root = pathlib.Path(os.environ.get(
      "FTRL_ADAM_WHEELHOUSE",
      pathlib.Path.home() / ".cache" / "ftrl-adam-tests"))
  house = root / f"wheels-{key[:16]}"
  if not house.is_dir():
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=root))
    _pip("download", "--quiet", "--only-binary=:all:", "--dest", str(tmp),
         *requirements, "setuptools>=77")
    try:
      tmp.rename(house)
    except OSError:          # another process filled it first
      shutil.rmtree(tmp, ignore_errors=True)
  return house


def test_pip_install_dot_brings_the_optimizer_only(tmp_path):
  requirements = _requirements()
  assert {re.split(r"[<>=~!\[ ]", r)[0] for r in requirements} == {
      "jax", "optax", "numpy"}
  house = _wheelhouse(requirements)
  src = tmp_path / "src"      # a copy: building writes into the source tree
  src.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  shutil.copytree(ROOT / "ftrl_adam", src / "ftrl_adam",
                  ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
  env_dir = tmp_path / "venv"
  venv.create(env_dir, with_pip=False)
  python = str(env_dir / "bin" / "python")
  _pip("--python", python, "install", "--quiet", "--no-index", "--no-compile",
       "--find-links", str(house), str(src))

  listed = json.loads(_pip("--python", python, "list", "--format=json").stdout)
  installed = {d["name"].lower() for d in listed}
  assert "ftrl-adam" in installed and {"jax", "optax", "numpy"} <= installed
  assert not installed & LAB_DISTRIBUTIONS, installed & LAB_DISTRIBUTIONS

  clean = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XLA_FLAGS")}
  trained = subprocess.run([python, "-c", TRAIN], capture_output=True,
                           text=True, env=clean, cwd=tmp_path)
  assert trained.returncode == 0, trained.stderr
  report = json.loads(trained.stdout)
  assert report["found"] == []
  for command in ("study", "bench"):
    assert report["said"][command] == [
        2, f"ftrl-adam {command}: error: this command {EXTRA_LINE}\n"]
  assert report["said"]["import"] == f"ftrl_adam.studies {EXTRA_LINE}"

  run = subprocess.run([str(env_dir / "bin" / "ftrl-adam"), "regret"],
                       capture_output=True, text=True, env=clean, cwd=tmp_path)
  assert (run.returncode, run.stdout, run.stderr) == (
      2, "", f"ftrl-adam regret: error: this command {EXTRA_LINE}\n")
