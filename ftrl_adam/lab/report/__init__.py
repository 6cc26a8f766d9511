"""Reports of experiments: summaries as rows and text (:mod:`.summary`) and
the figures drawn from a written table (:mod:`.figures`, the package's only
Matplotlib user, imported only when figures are drawn)."""

from ftrl_adam.lab.report.summary import best_b2_per_b1
from ftrl_adam.lab.report.summary import fmt
from ftrl_adam.lab.report.summary import format_rows
from ftrl_adam.lab.report.summary import nearest

__all__ = ("best_b2_per_b1", "fmt", "format_rows", "nearest")
