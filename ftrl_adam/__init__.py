"""ftrl_adam: Adam as follow-the-regularised-leader on the updates, for optax and Flax.

The public API:

* :func:`scale_by_ftrl_adam`, :func:`ftrl_adam` - the FTRL-update Adam transforms;
* :func:`clip_box`, :func:`clip_ball` - zero-safe clipping to the FTRL domains;
* :func:`ema_params`, :func:`ema_params_of` - EMA of the parameters (docs/theory.md 5),
  last in a chain; :func:`with_ema` puts it there;
* :func:`posthoc_ema_params` (:func:`with_posthoc_ema`), :class:`PosthocSnapshotKeeper`,
  :func:`posthoc_ema` - post-hoc EMA (Karras et al. 2024): choose sigma_rel after training;
* :func:`online_to_nonconvex`, :func:`nonconvex_iterate` - the conversion of
  docs/theory.md 4, and :func:`ahn_cutkosky`, the full Ahn & Cutkosky algorithm;
* :func:`regret_monitor`, :func:`regret_of`, :class:`RegretRecorder`,
  :func:`recorded_gradients` - the b1-discounted regret of a training run and
  its bound D3 on the real gradients, and their recording for a replay;
The lab, loaded on first use (``import ftrl_adam`` does not load it):

* :mod:`regret` - the regret lab (online linear games, adversaries, bounds,
  the beta-grid);
* :mod:`grid` - the engine: grids of configurations run as one sharded,
  resumable program (``ftrl_adam.plots`` draws their heatmaps);
* :mod:`studies` - (beta1, beta2) x learning-rate studies of Flax models,
  trained in one vmapped program;
* :mod:`testing` - float64 oracles the tests compare the lab against.
"""

import importlib as _importlib
import importlib.abc as _importlib_abc
import importlib.util as _importlib_util
import sys as _sys

from ftrl_adam.clipping import ClipBallState
from ftrl_adam.clipping import ClipBoxState
from ftrl_adam.clipping import clip_ball
from ftrl_adam.clipping import clip_box
from ftrl_adam.conversion import OnlineToNonconvexState
from ftrl_adam.conversion import nonconvex_iterate
from ftrl_adam.conversion import online_to_nonconvex
from ftrl_adam.ema import EmaParamsState
from ftrl_adam.ema import ema_params
from ftrl_adam.ema import ema_params_of
from ftrl_adam.ema import power_from_sigma_rel
from ftrl_adam.ema import with_ema
from ftrl_adam.ftrl import ScaleByFtrlAdamState
from ftrl_adam.ftrl import ftrl_adam
from ftrl_adam.ftrl import scale_by_ftrl_adam
from ftrl_adam.monitor import MonitoredRegret
from ftrl_adam.monitor import RegretMonitorState
from ftrl_adam.monitor import regret_monitor
from ftrl_adam.monitor import regret_of
from ftrl_adam._synthesis import posthoc_ema
from ftrl_adam._synthesis import posthoc_ema_weights
from ftrl_adam.posthoc import PosthocEmaState
from ftrl_adam.posthoc import posthoc_ema_params
from ftrl_adam.posthoc import posthoc_emas_of
from ftrl_adam.posthoc import with_posthoc_ema
from ftrl_adam.recipes import ahn_cutkosky
from ftrl_adam.recording import RegretRecorder
from ftrl_adam.recording import recorded_gradients
from ftrl_adam.snapshots import PosthocSnapshotKeeper
from ftrl_adam.snapshots import PosthocSnapshots

__version__ = "0.1.0"

# The lab (the layer above the optimizer) lives in ``ftrl_adam/lab/`` and loads
# on first use.  Its public modules keep their short names: ``ftrl_adam.regret``
# is ``ftrl_adam.lab.regret`` (the same module object, submodules included),
# whether reached as ``fa.regret`` or by ``import ftrl_adam.regret``.
# ``import ftrl_adam`` loads none of them (tests/test_layering.py).
_LAB_ALIASES = {"grid": "engine", "regret": "regret", "studies": "studies",
                "testing": "testing", "plots": "report.figures", "cli": "cli"}


def _lab_name(fullname):
  head, _, rest = fullname.partition(".")
  short, _, sub = rest.partition(".")
  if head != __name__ or short not in _LAB_ALIASES:
    return None
  return f"{__name__}.lab.{_LAB_ALIASES[short]}" + (f".{sub}" if sub else "")


class _LabAliases(_importlib_abc.MetaPathFinder, _importlib_abc.Loader):
  """Imports ``ftrl_adam.<short>[.sub]`` as the lab module it names."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    real = _lab_name(fullname)
    if real is None:
      return None
    spec = _importlib_util.find_spec(real)
    if spec is None:
      return None
    return _importlib_util.spec_from_loader(
        fullname, self, origin=spec.origin,
        is_package=spec.submodule_search_locations is not None)

  def create_module(self, spec):
    module = _importlib.import_module(_lab_name(spec.name))
    spec.loader_state = module.__spec__
    return module

  def exec_module(self, module):
    # The import system set the alias's spec on the module: give it back its
    # own, so that the module is one object with one name.
    module.__spec__ = module.__spec__.loader_state

  def get_code(self, fullname):   # ``python -m ftrl_adam.cli``
    real = _lab_name(fullname)
    return _importlib_util.find_spec(real).loader.get_code(real)


if not any(isinstance(f, _LabAliases) for f in _sys.meta_path):
  _sys.meta_path.insert(0, _LabAliases())


def __getattr__(name):
  if name in _LAB_ALIASES:
    return _importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = (
    "ClipBallState",
    "ClipBoxState",
    "EmaParamsState",
    "MonitoredRegret",
    "OnlineToNonconvexState",
    "PosthocEmaState",
    "PosthocSnapshotKeeper",
    "PosthocSnapshots",
    "RegretMonitorState",
    "RegretRecorder",
    "ScaleByFtrlAdamState",
    "ahn_cutkosky",
    "clip_ball",
    "clip_box",
    "ema_params",
    "ema_params_of",
    "ftrl_adam",
    "grid",
    "nonconvex_iterate",
    "online_to_nonconvex",
    "posthoc_ema",
    "posthoc_ema_params",
    "posthoc_ema_weights",
    "posthoc_emas_of",
    "power_from_sigma_rel",
    "recorded_gradients",
    "regret",
    "regret_monitor",
    "regret_of",
    "scale_by_ftrl_adam",
    "studies",
    "testing",
    "with_ema",
    "with_posthoc_ema",
)
