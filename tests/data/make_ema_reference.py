"""Writes tests/data/ema_reference.json: EMAs computed by ema-pytorch and timm.

NOT run by the tests, and neither library is a dependency of ftrl_adam.  This
script was run once, in a throwaway virtual environment outside the repository:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch ema-pytorch timm
    /tmp/refvenv/bin/python tests/data/make_ema_reference.py

It plays a fixed sequence of parameter vectors x_0 (at construction) and
x_1..x_T (the parameters after optimizer step n) through ema-pytorch's ``EMA``
and timm's ``ModelEmaV3`` in several configurations, and stores the EMA
parameters read after every step.  ``tests/test_ema_reference.py`` holds
``ftrl_adam.ema_params``, configured by the one-to-one mapping documented in
its docstring, to these numbers.
"""

import json
import pathlib
import platform
from importlib.metadata import version

import ema_pytorch
import numpy as np
import timm
import torch
from timm.utils.model_ema import ModelEmaV3

OUT = pathlib.Path(__file__).with_name("ema_reference.json")
D = 5


class Vector(torch.nn.Module):
  """A model whose only parameter is one float32 vector."""

  def __init__(self, x0):
    super().__init__()
    self.w = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float32))


def sequence(steps, seed):
  """x_0..x_T: a float32 random walk (rounded once, stored exactly)."""
  rng = np.random.default_rng(seed)
  xs = np.cumsum(0.3 * rng.normal(size=(steps + 1, D)), axis=0) + 1.0
  return xs.astype(np.float32)


def run_ema_pytorch(xs, kwargs):
  model = Vector(xs[0])
  ema = ema_pytorch.EMA(model, **kwargs)
  out = []
  for x in xs[1:]:
    with torch.no_grad():
      model.w.copy_(torch.tensor(x))
    ema.update()                          # once per optimizer step
    out.append(ema.ema_model.w.detach().numpy().copy())
  return out


def run_timm(xs, kwargs, pass_step, every=1):
  model = Vector(xs[0])
  ema = ModelEmaV3(model, **kwargs)
  out = []
  for n, x in enumerate(xs[1:], start=1):
    with torch.no_grad():
      model.w.copy_(torch.tensor(x))
    if (n - 1) % every == 0:              # a loop calling it every k steps
      if pass_step:
        ema.update(model, step=n)         # n = optimizer steps done
      else:
        ema.update(model)
    out.append(ema.module.w.detach().numpy().copy())
  return out


CASES = [
    # ema-pytorch's defaults (beta 0.9999, update_after_step 100, every 10,
    # inv_gamma 1, power 2/3): the averaging starts at step 111.
    dict(name="ema_pytorch_defaults", library="ema_pytorch", steps=160,
         seed=0, kwargs=dict()),
    # docs/howto/flax.md: warmed up to 0.99 with power 3/4, every 2 steps.
    dict(name="ema_pytorch_every_2", library="ema_pytorch", steps=40, seed=1,
         kwargs=dict(beta=0.99, update_after_step=0, update_every=2,
                     power=3 / 4)),
    dict(name="ema_pytorch_after_every_min", library="ema_pytorch", steps=40,
         seed=2, kwargs=dict(beta=0.95, update_after_step=5, update_every=3,
                             inv_gamma=2.0, power=2 / 3, min_value=0.3)),
    dict(name="ema_pytorch_every_1", library="ema_pytorch", steps=40, seed=3,
         kwargs=dict(beta=0.9, update_after_step=0, update_every=1,
                     power=1.0)),
    dict(name="timm_warmup", library="timm", steps=40, seed=4, pass_step=True,
         kwargs=dict(decay=0.99, min_decay=0.2, update_after_step=3,
                     use_warmup=True, warmup_gamma=1.5, warmup_power=0.75)),
    dict(name="timm_warmup_every_3", library="timm", steps=40, seed=5,
         pass_step=True, every=3,
         kwargs=dict(decay=0.98, update_after_step=0, use_warmup=True,
                     warmup_gamma=1.0, warmup_power=2 / 3)),
    dict(name="timm_constant_after", library="timm", steps=40, seed=6,
         pass_step=True,
         kwargs=dict(decay=0.8, update_after_step=2, use_warmup=False)),
    dict(name="timm_no_step", library="timm", steps=40, seed=7,
         pass_step=False, kwargs=dict(decay=0.9)),
]


def main():
  torch.set_num_threads(1)
  cases = []
  for case in CASES:
    xs = sequence(case["steps"], case["seed"])
    if case["library"] == "ema_pytorch":
      emas = run_ema_pytorch(xs, case["kwargs"])
    else:
      emas = run_timm(xs, case["kwargs"], case["pass_step"],
                      case.get("every", 1))
    cases.append({
        "name": case["name"],
        "library": case["library"],
        "kwargs": case["kwargs"],
        "pass_step": case.get("pass_step"),
        "every": case.get("every", 1),
        "x": xs.tolist(),                              # x_0 .. x_T
        "ema": np.stack(emas).astype(np.float64).tolist(),  # after steps 1..T
    })
  header = (
      "EMA reference values produced by the real libraries, not by ftrl_adam: "
      f"ema-pytorch {version('ema-pytorch')} "
      f"(EMA), timm {timm.__version__} (ModelEmaV3), torch {torch.__version__}, "
      f"Python {platform.python_version()}, float32 on CPU. Written by "
      "tests/data/make_ema_reference.py (not run by the tests). 'x' holds "
      "x_0 (the model at construction) and x_1..x_T (the params after each "
      "optimizer step); 'ema' the library's EMA params read after step n.")
  OUT.write_text(json.dumps({"_about": header, "cases": cases}) + "\n")
  print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
  main()
