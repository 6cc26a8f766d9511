"""No module of the package reaches into another module's private names.

Issue 10's layering rule, for the optimizer layer and the lab alike: code
shared between modules lives in a private module (``_numerics``, ``_checks``,
``_state_search``, ``_grid_io``, ...) under public names, and is imported from
there; ``ema._find_state`` from ``conversion`` is the kind of access this test
forbids.
"""

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[1] / "ftrl_adam"
OPTIMIZER_LAYER = ("ftrl", "clipping", "ema", "conversion", "recipes",
                   "_numerics", "_checks", "_state_search")


def test_the_layer_exists():
  for name in OPTIMIZER_LAYER:
    assert (PKG / f"{name}.py").exists(), name


def test_the_check_sees_a_violation(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from ftrl_adam import ema as _ema\n"
                 "from ftrl_adam.ema import _blend\n"
                 "x = _ema._find_state\n")
  assert sorted(_private_accesses(bad)) == [("ftrl_adam.ema", "_blend"),
                                            ("ftrl_adam.ema", "_find_state")]


def _private_accesses(path):
  """(module, name) for ``alias._name`` and ``from ftrl_adam.m import _name``
  (a private *module* may be imported; its private names may not)."""
  tree = ast.parse(path.read_text())
  aliases = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
        "ftrl_adam"):
      for a in node.names:
        sub = PKG.parent.joinpath(*node.module.split("."), a.name)
        is_module = sub.with_suffix(".py").exists() or sub.is_dir()
        if (a.name.startswith("_") and not a.name.startswith("__")
            and not is_module):
          yield node.module, a.name
        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("ftrl_adam.") and a.asname:
          aliases[a.asname] = a.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and node.attr.startswith("_")
        and not node.attr.startswith("__")):
      yield aliases[node.value.id], node.attr


def test_no_module_of_the_package_uses_another_modules_private_names():
  """The whole package, the lab included (issue 10): what is shared lives in
  a module of its own under public names (private modules such as
  ``_grid_io`` or ``_state_search`` may be imported; their ``_names`` not)."""
  found = {}
  for path in sorted(PKG.rglob("*.py")):
    hits = sorted(set(_private_accesses(path)))
    if hits:
      found[str(path.relative_to(PKG))] = hits
  assert found == {}
