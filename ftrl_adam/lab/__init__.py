"""The lab: what runs *on top of* the optimizer (loaded only when used).

Data flows one way: adversary -> game (the transform's own
``update``) -> running sums -> regret, bound -> experiment spec -> runner
(vmap, shard, chunk, resume) -> table -> report -> CLI.

* :mod:`ftrl_adam.grid` - the engine: axes, tidy tables, :func:`run_grid`
  (one compiled program over chunks of cells or of groups of cells sharing
  an input stream, sharded over every device, resumable);
* :mod:`ftrl_adam.lab.experiment` - the runner of *experiments*: one results
  folder layout, one resume protocol, the size check, timings across resumes;
* :mod:`ftrl_adam.lab.options` - options of experiment specs (the CLI's
  flags are read from them) and the small checks they share;
* :mod:`ftrl_adam.lab.report` - the best-b2-per-b1 summary and the heatmaps;
* :mod:`ftrl_adam.regret` (the beta-grid) and :mod:`ftrl_adam.studies`
  (training studies) - the two experiments;
* :mod:`ftrl_adam.cli` - the ``ftrl-adam`` command; nothing in the lab
  imports it.

``import ftrl_adam`` loads none of this (tested: ``tests/test_layering.py``).
"""
