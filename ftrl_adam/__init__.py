"""ftrl_adam: Adam as follow-the-regularised-leader on the updates, for optax and Flax.

The public API:

* :func:`scale_by_ftrl_adam`, :func:`ftrl_adam` - the FTRL-update Adam transforms;
* :func:`clip_box`, :func:`clip_ball` - zero-safe clipping to the FTRL domains;
* :func:`ema_params`, :func:`ema_params_of` - EMA of the parameters (docs/theory.md 5);
* :func:`posthoc_ema_params`, :class:`PosthocSnapshotKeeper`, :func:`posthoc_ema`
  - post-hoc EMA (Karras et al. 2024): choose sigma_rel after training;
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
from ftrl_adam.ftrl import ScaleByFtrlAdamState
from ftrl_adam.ftrl import ftrl_adam
from ftrl_adam.ftrl import scale_by_ftrl_adam
from ftrl_adam.monitor import MonitoredRegret
from ftrl_adam.monitor import RegretMonitorState
from ftrl_adam.monitor import RegretRecorder
from ftrl_adam.monitor import recorded_gradients
from ftrl_adam.monitor import regret_monitor
from ftrl_adam.monitor import regret_of
from ftrl_adam.posthoc import PosthocEmaState
from ftrl_adam.posthoc import PosthocSnapshotKeeper
from ftrl_adam.posthoc import PosthocSnapshots
from ftrl_adam.posthoc import posthoc_ema
from ftrl_adam.posthoc import posthoc_ema_params
from ftrl_adam.posthoc import posthoc_ema_weights
from ftrl_adam.posthoc import posthoc_emas_of
from ftrl_adam.recipes import ahn_cutkosky

__version__ = "0.1.0"

# The lab (the layer above the optimizer) loads on first use: ``fa.regret``,
# ``fa.grid``, ``fa.studies``, ``fa.plots`` and ``fa.testing`` work, and
# ``import ftrl_adam`` loads none of them (tests/test_layering.py).
_LAZY_SUBMODULES = ("grid", "plots", "regret", "studies", "testing")


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    import importlib  # pylint: disable=import-outside-toplevel
    return importlib.import_module(f"ftrl_adam.{name}")
  raise AttributeError(f"module 'ftrl_adam' has no attribute {name!r}")

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
)
