"""A griffe extension used by the docs build only (mkdocs.yml, mkdocstrings).

The package's docstrings follow STYLE.md (Google style, doctest examples) and
some still use two Sphinx habits that Markdown does not understand.  Before
mkdocstrings parses a docstring, this extension rewrites

* an ``Example:`` section title to ``Examples:`` (the Google-style name that
  griffe parses as doctest examples; ``Example:`` would be read as an
  admonition and its ``>>>`` lines as nested block quotes);
* the roles ``:func:`name``` / ``:class:`` / ``:mod:`` / ``:meth:`` /
  ``:attr:`` / ``:data:`` / ``:obj:`` to Markdown: a cross-reference when
  ``name`` is a public name of ``ftrl_adam`` (rendered on the API page),
  plain code otherwise, so that no reference can dangle.

The source files are not changed; ``pytest --doctest-modules`` sees them as
they are.
"""

from __future__ import annotations

import ast
import pathlib
import re

import griffe

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.M)
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj):`~?([\w.]+)`")


def _public_names() -> set[str]:
  """``ftrl_adam.__all__``, read statically from ftrl_adam/__init__.py."""
  tree = ast.parse((_ROOT / "ftrl_adam" / "__init__.py").read_text())
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
      return set(ast.literal_eval(node.value))
  return set()


_PUBLIC = _public_names()
# The lab's public modules, whose short names (``ftrl_adam.regret``) are
# aliases of modules under ftrl_adam/lab/ (ftrl_adam/__init__.py).
_LAB = {"grid": "lab.engine", "regret": "lab.regret", "studies": "lab.studies",
        "testing": "lab.testing", "plots": "lab.report.figures", "cli": "lab.cli"}


def _role(match: re.Match) -> str:
  name = match.group(1)
  short = name.removeprefix("ftrl_adam.")
  if short in _PUBLIC:
    return f"[`{short}`][ftrl_adam.{_LAB.get(short, short)}]"
  return f"`{name}`"


def rewrite(text: str) -> str:
  """The docstring ``text`` with the two rewrites above applied."""
  return _ROLE.sub(_role, _EXAMPLE.sub(r"\1Examples:", text))


class SphinxToMarkdown(griffe.Extension):
  """Rewrites every docstring of the loaded objects (see the module docstring)."""

  def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
    if obj.docstring is not None:
      obj.docstring.value = rewrite(obj.docstring.value)
