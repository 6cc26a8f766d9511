"""The post-hoc snapshot folder's format: tree layouts, manifest, reading (private).

What :class:`ftrl_adam.PosthocSnapshotKeeper` writes and
:meth:`ftrl_adam.PosthocSnapshots.load` reads (``ftrl_adam.snapshots``), on
the package's one integrity design (``ftrl_adam._store``)::

    directory/
      .lock                    the keeper's lock (one keeper at a time)
      manifest.json            the powers, the tree's leaves (key path, shape,
                               dtype) and, per step, its file and SHA-256
      step_000000005.npz       the EMAs of step 5: array ``e{k}_{i}`` is leaf
      step_000000010.npz       i of the EMA of power k

A tree's structure is stored as its leaves' key paths (JSON), never
pickled: without a ``like`` it comes back as nested dicts and lists; with
one, its paths, shapes and dtypes must be the stored ones (nothing is cast).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _state_search
from ftrl_adam import _store

FORMAT = "ftrl_adam.posthoc_snapshots"
VERSION = 1
WHAT = "post-hoc snapshot folder"


def file_name(step: int) -> str:
  """The file of step ``step``'s snapshots."""
  return f"step_{step:09d}.npz"


# ----------------------------------------------------------------------------
# Tree layouts: key paths, shapes and dtypes, as JSON.
# ----------------------------------------------------------------------------

def _key(k: Any) -> list:
  """A key path entry as JSON: [kind, key]."""
  tu = jax.tree_util
  if isinstance(k, tu.DictKey):
    key = k.key if isinstance(k.key, (str, int)) else str(k.key)
    return ["key", key]
  if isinstance(k, tu.SequenceKey):
    return ["index", k.idx]
  if isinstance(k, tu.GetAttrKey):
    return ["attr", k.name]
  if isinstance(k, tu.FlattenedIndexKey):
    return ["flat", k.key]
  return ["other", str(k)]


def layout_of(tree: Any) -> list:
  """[{path, shape, dtype}] of the tree's leaves, in flattening order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(
      _state_search.unwrap_variables(tree))
  out = []
  for path, v in flat:
    shape = v.shape if hasattr(v, "shape") else np.shape(v)
    dtype = v.dtype if hasattr(v, "dtype") else jnp.result_type(v)
    out.append({"path": [_key(k) for k in path],
                "shape": [int(n) for n in shape], "dtype": str(np.dtype(dtype))})
  return out


def where(path: list) -> str:
  """A key path as Python writes it: ``['w']``, ``.b``, ``[0]``."""
  return "".join(f"[{k!r}]" if kind != "attr" else f".{k}" for kind, k in path
                 ) or "(the root)"


def mismatch(a: list, b: list) -> Optional[str]:
  """How layout ``b`` differs from ``a``, as "N leaves, not M" or "leaf X of
  int32[3], not float32[3]" (None: the same)."""
  if len(a) != len(b):
    return f"{len(b)} leaves, not {len(a)}"
  for x, y in zip(a, b, strict=True):
    if [k for _, k in x["path"]] != [k for _, k in y["path"]]:
      return f"leaf {where(y['path'])} where {where(x['path'])} belongs"
    if (x["shape"], x["dtype"]) != (y["shape"], y["dtype"]):
      return (f"leaf {where(y['path'])} of {y['dtype']}{y['shape']}, not "
              f"{x['dtype']}{x['shape']}")
  return None


def nest(layout: list, leaves: list) -> Any:
  """A tree of nested dicts (and lists) from key paths, without a ``like``."""
  if len(layout) == 1 and not layout[0]["path"]:
    return leaves[0]
  root: dict = {}
  for desc, leaf in zip(layout, leaves, strict=True):
    node, path = root, [tuple(k) for k in desc["path"]]
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = leaf

  def build(node):
    if not isinstance(node, dict):
      return node
    if node and all(kind == "index" for kind, _ in node):
      return [build(node[k]) for k in sorted(node, key=lambda k: k[1])]
    return {key: build(v) for (_, key), v in node.items()}

  return build(root)


def restructure(layout: list, stacked: list, like: Any, source: str) -> Any:
  """The stacked leaves in ``like``'s structure (checked), or nested dicts;
  ``source`` says where the snapshots come from, for the message."""
  if like is None:
    return nest(layout, stacked)
  like = _state_search.unwrap_variables(like)
  why = mismatch(layout, layout_of(like))
  if why is not None:
    raise ValueError(f"Snapshot trees do not match: the snapshots in {source} "
                     f"do not restore into `like`: it has {why} as stored "
                     "(nothing is cast).")
  return jax.tree.unflatten(jax.tree.structure(like), stacked)


def refuse_foreign(directory: str) -> None:
  """A folder without a manifest: an Orbax folder of an earlier version, or
  files that are not snapshots."""
  names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
  steps = sorted(int(n) for n in names
                 if n.isdigit() and os.path.isdir(os.path.join(directory, n)))
  if steps:
    raise ValueError(
        f"`directory` {directory!r} holds Orbax checkpoints (step folders "
        f"{', '.join(map(str, steps[:8]))}{', ...' if len(steps) > 8 else ''})"
        " written by an "
        "earlier ftrl_adam: this version stores snapshots as .npz files with "
        "a manifest of their SHA-256 and does not read Orbax folders. Load "
        "them with the version that wrote them, and keep new snapshots in a "
        "new folder.")
  if names:
    raise ValueError(
        f"`directory` {directory!r} holds files ({', '.join(names[:4])}) but "
        f"no {_store.MANIFEST}: it is not a {WHAT} (give an empty or new "
        "folder).")


def _leaf_entry(d: Any) -> bool:
  """Whether ``d`` is a leaf of a layout: {path: [[kind, key], ...],
  shape: [int >= 0, ...], dtype: str}."""
  if not isinstance(d, dict):
    return False
  path, shape = d.get("path"), d.get("shape")
  return (isinstance(path, list) and all(
      isinstance(k, list) and len(k) == 2
      and k[0] in ("key", "index", "attr", "flat", "other") for k in path)
          and isinstance(shape, list) and all(
              isinstance(n, int) and not isinstance(n, bool) and n >= 0
              for n in shape)
          and isinstance(d.get("dtype"), str))


def read(directory: str) -> dict:
  """The folder's manifest, header and roles checked (no data read)."""
  if not os.path.isdir(directory):
    raise ValueError(f"`directory` {directory!r} does not exist or is not a "
                     "folder: no post-hoc EMA snapshots to load.")
  if not os.path.exists(os.path.join(directory, _store.MANIFEST)):
    refuse_foreign(directory)
  manifest = _store.read_manifest(directory, FORMAT, WHAT)
  path = os.path.join(directory, _store.MANIFEST)
  if manifest["version"] != VERSION:
    raise _store.StoreError(
        f"{path!r} is of format version {manifest['version']}; this "
        f"ftrl_adam reads {VERSION}: upgrade ftrl_adam.")
  powers, layout = manifest.get("powers"), manifest.get("leaves")
  steps = set()
  for e in manifest["files"]:
    step = e["role"].get("step")
    if (isinstance(step, bool) or not isinstance(step, int) or step < 1
        or step in steps or e["role"].get("powers") != powers):
      raise _store.StoreError(
          f"{path!r} lists {e['file']!r} with the role {e['role']}: not a "
          f"new step >= 1 with the folder's powers {powers}. Refused.")
    steps.add(step)
  if steps and (not isinstance(powers, list) or not isinstance(layout, list)
                or not all(_leaf_entry(d) for d in layout)):
    raise _store.StoreError(f"{path!r} has a mangled header: {directory!r} "
                            "is damaged.")
  return manifest


def load(directory: str) -> tuple[list, list, list, list]:
  """The snapshots in ``directory``, every file checked: (steps, powers,
  layout, stacked leaves), one entry of steps and powers per snapshot."""
  manifest = read(directory)
  entries = sorted(manifest["files"], key=lambda e: e["role"]["step"])
  if not entries:
    raise ValueError(f"Too few snapshots: {directory!r} holds none.")
  powers, layout = manifest["powers"], manifest["leaves"]
  keys = [f"e{k}_{i}" for k in range(len(powers)) for i in range(len(layout))]
  per_leaf: list[list[np.ndarray]] = [[] for _ in layout]
  for e in entries:
    step = e["role"]["step"]
    arrays = _store.load_arrays(
        directory, e, name=file_name(step),
        role={"step": step, "powers": powers}, keys=keys, what=WHAT)
    for k in range(len(powers)):
      for i, desc in enumerate(layout):
        a = arrays[f"e{k}_{i}"]
        if [list(a.shape), str(a.dtype)] != [desc["shape"], desc["dtype"]]:
          raise _store.StoreError(
              f"{os.path.join(directory, e['file'])!r}: leaf "
              f"{where(desc['path'])} is {a.dtype}{list(a.shape)}, the "
              f"manifest says {desc['dtype']}{desc['shape']}. Refused.")
        per_leaf[i].append(a)
  stacked = [np.stack(xs) for xs in per_leaf]
  steps = [e["role"]["step"] for e in entries for _ in powers]
  return steps, powers * len(entries), layout, stacked
