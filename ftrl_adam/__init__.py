"""ftrl_adam: Adam as follow-the-regularised-leader on the updates, for optax and Flax.

The public API (DESIGN.md):

* :func:`scale_by_ftrl_adam`, :func:`ftrl_adam` - the FTRL-update Adam transforms;
* :func:`clip_box`, :func:`clip_ball` - zero-safe clipping to the FTRL domains.
"""

from ftrl_adam.clipping import ClipBallState
from ftrl_adam.clipping import ClipBoxState
from ftrl_adam.clipping import clip_ball
from ftrl_adam.clipping import clip_box
from ftrl_adam.ftrl import ScaleByFtrlAdamState
from ftrl_adam.ftrl import ftrl_adam
from ftrl_adam.ftrl import scale_by_ftrl_adam

__version__ = "0.1.0"

__all__ = (
    "ClipBallState",
    "ClipBoxState",
    "ScaleByFtrlAdamState",
    "clip_ball",
    "clip_box",
    "ftrl_adam",
    "scale_by_ftrl_adam",
)
