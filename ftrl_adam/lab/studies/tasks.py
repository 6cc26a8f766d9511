"""Training tasks for the (b1, b2) studies: model, loss and data, all pure JAX.

A :class:`Task` is what :func:`ftrl_adam.studies.train` needs to run a whole
training loop under one ``jax.lax.scan``:

* ``init_params(key) -> params``: a parameter pytree (a Flax ``init``);
* ``loss(params, batch) -> scalar``: the mean training loss of a batch;
* ``train_batch(key, step) -> batch``: a batch as a *pure function* of a PRNG key
  and the step number (the data arrays are held as constants and batches are
  gathered by index), so the data pipeline lives inside the compiled loop and
  can be vmapped over seeds;
* ``val_batch``: the validation data, one fixed pytree of arrays, evaluated
  whole with ``loss`` (and ``accuracy`` when the task defines it).

Built-in tasks (nothing is downloaded; :data:`TASKS`, :func:`make_task`):

``digits``
  an MLP (Flax Linen) on scikit-learn's 8x8 digits (1,797 images shipped with
  scikit-learn), 80/20 split, cross-entropy, accuracy.
``charlm``
  a small causal character-level Transformer (Flax Linen; 2 layers, width 64,
  context 32 by default) on the Python help topics that ship with CPython
  (``pydoc_data.topics``, about 460k characters), or any text you pass; loss in
  nats per character, compared with the corpus's unigram entropy.
``quadratic``
  the noisy quadratic model of Zhang et al. (2019): ``0.5 sum_i h_i w_i**2``
  with curvatures ``h_i`` spread over ``condition`` and gradient noise whose
  variance is proportional to ``h_i``; validation loss is the exact expected
  loss.
``rosenbrock``
  ``(1 - x)**2 + 100 (y - x**2)**2`` from near (-1.2, 1), with optional Gaussian
  gradient noise; validation loss is the noise-free value.

Your own model: :func:`flax_task` wraps a Flax model (a Linen module, an NNX
module, or a function building an NNX module from ``nnx.Rngs``), a loss and
data (arrays sampled with replacement, or a Python iterable of batches), or
build a :class:`Task` directly.

Every reduction over examples uses a batching-independent summation order
(``ftrl_adam._numerics.fixed_order_sum``) so that a vmapped grid cell computes
the same bits as the single run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import itertools
import math
import re
import sys
from typing import Any, Callable, Iterable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _numerics
from ftrl_adam.lab.studies import _corpus

Params = Any
Batch = Any


@dataclasses.dataclass(frozen=True)
class TaskDefaults:
  """Defaults a study uses for a task unless told otherwise.

  Attributes:
    steps: training steps.
    learning_rates: the learning-rate grid tuned per (b1, b2).
    ema_decay: decay of the EMA of the parameters (``ftrl_adam.ema_params``).
    eval_every: evaluate the validation loss every this many steps (and at the
      last step).
  """

  steps: int
  learning_rates: tuple[float, ...]
  ema_decay: float
  eval_every: int


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """A model, its loss and its data, as pure JAX functions (module docstring).

  Attributes:
    name: a short name (a CSV column value).
    init_params: ``key -> params``.
    loss: ``(params, batch) -> float32 scalar``, the mean loss of a batch.
    train_batch: ``(key, step) -> batch``; pure and jit-able, ``step`` is an
      int32 scalar.
    val_batch: the validation data, a pytree of arrays given to ``loss``.
    accuracy: optional ``(params, batch) -> float32 scalar`` in [0, 1].
    defaults: :class:`TaskDefaults` of a study of this task.
    info: JSON-able facts about the task (sizes, reference losses, corpus
      hash, keyword arguments used to build it).
  """

  name: str
  init_params: Callable[[jax.Array], Params]
  loss: Callable[[Params, Batch], jax.Array]
  train_batch: Callable[[jax.Array, jax.Array], Batch]
  val_batch: Batch
  accuracy: Optional[Callable[[Params, Batch], jax.Array]] = None
  defaults: TaskDefaults = TaskDefaults(
      steps=500, learning_rates=(1e-3, 3e-3, 1e-2), ema_decay=0.99,
      eval_every=50)
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def num_params(self) -> int:
    """Number of scalar parameters (computed abstractly, nothing is run)."""
    shapes = jax.eval_shape(self.init_params, jax.random.key(0))
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))


# ----------------------------------------------------------------------------
# Batch-invariant reductions.
# ----------------------------------------------------------------------------


def total(x: jax.Array) -> jax.Array:
  """Sum of all elements in a batching-independent order (float32).

  The pairwise tree of :func:`ftrl_adam._numerics.fixed_order_sum` behind an
  optimization barrier: XLA:CPU contracts ``a * b + c`` into a fused
  multiply-add inside a fusion, so without the barrier the products that make
  ``x`` could be fused into the first level of additions in one program (a
  vmapped grid) and not in another (the single run), changing the last bit.
  """
  x = jax.lax.optimization_barrier(jnp.asarray(x, jnp.float32))
  return _numerics.fixed_order_sum(x)


def mean(x: jax.Array) -> jax.Array:
  """Mean of all elements in a batching-independent order (float32); see :func:`total`."""
  return total(x) / np.float32(max(1, jnp.size(x)))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy (nats) over every position of ``labels``."""
  per = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)
  return mean(per)


def accuracy_of(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of positions where the arg-max of ``logits`` is the label."""
  return mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def _sample_rows(arrays, batch_size):
  """train_batch that draws ``batch_size`` rows with replacement."""
  n = jax.tree.leaves(arrays)[0].shape[0]

  def train_batch(key, step):
    del step
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), arrays)

  return train_batch


def _check_positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
      or value < 1:
    raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
  return int(value)


def _check_fraction(name, value):
  if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
    raise ValueError(f"`{name}` must be a number in (0, 1), got {value!r}.")
  return float(value)


# ----------------------------------------------------------------------------
# digits: an MLP on scikit-learn's digits.
# ----------------------------------------------------------------------------


class MLP(nn.Module):
  """A ReLU multilayer perceptron (Flax Linen)."""

  hidden: tuple[int, ...]
  classes: int

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.classes)(x)


def digits(hidden: tuple[int, ...] | int = (128,), batch_size: int = 64,
           val_fraction: float = 0.2, split_seed: int = 0) -> Task:
  """An MLP on scikit-learn's 8x8 digits (shipped with scikit-learn).

  Pixels are scaled to [0, 1]; a fixed random split (``split_seed``) keeps
  ``val_fraction`` of the 1,797 images for validation.

  Args:
    hidden: widths of the hidden layers.
    batch_size: training examples per step, drawn with replacement.
    val_fraction: fraction of the images held out.
    split_seed: seed of the train/validation split (not of training).

  Returns:
    A :class:`Task` with ``accuracy``.
  """
  from sklearn.datasets import load_digits  # scikit-learn ships the data

  if isinstance(hidden, (int, np.integer)):
    hidden = (int(hidden),)
  hidden = tuple(_check_positive_int("hidden", h) for h in hidden)
  batch_size = _check_positive_int("batch_size", batch_size)
  val_fraction = _check_fraction("val_fraction", val_fraction)
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  y = y.astype(np.int32)
  perm = np.random.default_rng(split_seed).permutation(len(x))
  n_val = int(round(val_fraction * len(x)))
  val, tr = perm[:n_val], perm[n_val:]
  model = MLP(hidden=hidden, classes=10)
  x_tr, y_tr = jnp.asarray(x[tr]), jnp.asarray(y[tr])

  def init_params(key):
    return model.init(key, jnp.zeros((1, 64), jnp.float32))["params"]

  def loss(params, batch):
    xb, yb = batch
    return cross_entropy(model.apply({"params": params}, xb), yb)

  def accuracy(params, batch):
    xb, yb = batch
    return accuracy_of(model.apply({"params": params}, xb), yb)

  return Task(
      name="digits",
      init_params=init_params,
      loss=loss,
      train_batch=_sample_rows((x_tr, y_tr), batch_size),
      val_batch=(jnp.asarray(x[val]), jnp.asarray(y[val])),
      accuracy=accuracy,
      defaults=TaskDefaults(steps=400,
                            learning_rates=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                            ema_decay=0.98, eval_every=50),
      info=dict(
          description=f"MLP {64}-{'-'.join(map(str, hidden))}-10 on "
                      "scikit-learn digits (8x8)",
          n_train=int(len(tr)), n_val=int(n_val), batch_size=batch_size,
          kwargs=dict(hidden=list(hidden), batch_size=batch_size,
                      val_fraction=val_fraction, split_seed=split_seed),
      ))


# ----------------------------------------------------------------------------
# charlm: a character-level Transformer language model.
# ----------------------------------------------------------------------------


class _Block(nn.Module):
  """Pre-LayerNorm Transformer block: causal self-attention, then an MLP."""

  d_model: int
  n_heads: int

  @nn.compact
  def __call__(self, x):
    t = x.shape[-2]
    head = self.d_model // self.n_heads
    h = nn.LayerNorm()(x)
    qkv = nn.DenseGeneral((3, self.n_heads, head), name="qkv")(h)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    scores = jnp.einsum("...qhd,...khd->...hqk", q, k) / np.float32(
        math.sqrt(head))
    causal = np.tril(np.ones((t, t), bool))
    scores = jnp.where(causal, scores, np.float32(-1e9))
    att = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("...hqk,...khd->...qhd", att, v)
    x = x + nn.DenseGeneral(self.d_model, axis=(-2, -1), name="proj")(out)
    h = nn.LayerNorm()(x)
    h = nn.Dense(4 * self.d_model)(h)
    h = nn.gelu(h)
    return x + nn.Dense(self.d_model)(h)


class CharTransformer(nn.Module):
  """A small causal Transformer over characters (Flax Linen).

  Token and learned position embeddings, ``n_layers`` pre-LN blocks, a final
  LayerNorm and a linear read-out to ``vocab`` logits at every position.
  """

  vocab: int
  context: int
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4

  @nn.compact
  def __call__(self, tokens):
    t = tokens.shape[-1]
    x = nn.Embed(self.vocab, self.d_model, name="embed")(tokens)
    pos = self.param("pos", nn.initializers.normal(0.02),
                     (self.context, self.d_model))
    x = x + pos[:t]
    for i in range(self.n_layers):
      x = _Block(self.d_model, self.n_heads, name=f"block{i}")(x)
    x = nn.LayerNorm()(x)
    return nn.Dense(self.vocab, name="head")(x)


def charlm(text: Optional[str] = None, context: int = 32, d_model: int = 64,
           n_layers: int = 2, n_heads: int = 4, batch_size: int = 32,
           val_fraction: float = 0.1, val_windows: int = 256) -> Task:
  """A character-level Transformer language model on a text that needs no download.

  The default text is the Python help topics (``pydoc_data.topics``, shipped
  with CPython), typographic characters mapped to ASCII.  The last
  ``val_fraction`` of the text is held out; validation uses ``val_windows``
  evenly spaced windows of ``context`` characters from it.  Loss: mean
  next-character cross-entropy in nats over all positions of a window.
  ``info`` carries ``unigram_entropy`` (nats per character of the whole text),
  the baseline a model beats once it uses context, and
  ``unigram_cross_entropy_val`` (the unigram model fitted on the training
  split, scored on the validation split).

  Args:
    text: the corpus; default the Python help topics.
    context: characters per training window (the model's context length).
    d_model, n_layers, n_heads: width, depth and heads of the Transformer.
    batch_size: windows per step, at uniformly random offsets.
    val_fraction: fraction of the text held out (its end).
    val_windows: number of validation windows.

  Returns:
    A :class:`Task` with ``accuracy`` (next-character accuracy).
  """
  source = "pydoc_data.topics" if text is None else "user text"
  text = _corpus.pydoc_text() if text is None else text
  if not isinstance(text, str):
    raise ValueError(f"`text` must be a string, got {type(text).__name__}.")
  context = _check_positive_int("context", context)
  d_model = _check_positive_int("d_model", d_model)
  n_layers = _check_positive_int("n_layers", n_layers)
  n_heads = _check_positive_int("n_heads", n_heads)
  batch_size = _check_positive_int("batch_size", batch_size)
  val_windows = _check_positive_int("val_windows", val_windows)
  val_fraction = _check_fraction("val_fraction", val_fraction)
  if d_model % n_heads:
    raise ValueError(
        f"`d_model` ({d_model}) must be a multiple of `n_heads` ({n_heads}).")
  n_val = int(len(text) * val_fraction)
  if n_val < context + 2 or len(text) - n_val < context + 2:
    raise ValueError(
        f"`text` is too short ({len(text)} characters) for context {context} "
        f"and val_fraction {val_fraction}: each split needs more than "
        f"context + 1 characters.")
  chars, index = _corpus.vocabulary(text)
  ids = np.fromiter((index[c] for c in text), np.int32, len(text))
  train_ids, val_ids = ids[:-n_val], ids[-n_val:]
  starts = np.linspace(0, n_val - context - 1, val_windows).astype(np.int64)
  windows = np.stack([val_ids[s:s + context + 1] for s in starts])
  model = CharTransformer(vocab=len(chars), context=context, d_model=d_model,
                          n_layers=n_layers, n_heads=n_heads)
  train_arr = jnp.asarray(train_ids)
  n_starts = len(train_ids) - context

  def init_params(key):
    return model.init(key, jnp.zeros((1, context), jnp.int32))["params"]

  def loss(params, batch):
    return cross_entropy(
        model.apply({"params": params}, batch[..., :-1]), batch[..., 1:])

  def accuracy(params, batch):
    return accuracy_of(
        model.apply({"params": params}, batch[..., :-1]), batch[..., 1:])

  def train_batch(key, step):
    del step
    s = jax.random.randint(key, (batch_size,), 0, n_starts)
    return jax.vmap(
        lambda i: jax.lax.dynamic_slice(train_arr, (i,), (context + 1,)))(s)

  train_text, val_text = text[:-n_val], text[-n_val:]
  return Task(
      name="charlm",
      init_params=init_params,
      loss=loss,
      train_batch=train_batch,
      val_batch=jnp.asarray(windows),
      accuracy=accuracy,
      defaults=TaskDefaults(steps=600, learning_rates=(1e-3, 3e-3, 1e-2),
                            ema_decay=0.98, eval_every=100),
      info=dict(
          description=f"character Transformer ({n_layers} layers, width "
                      f"{d_model}, {n_heads} heads, context {context}) on "
                      f"{source}",
          corpus=source, corpus_chars=len(text),
          corpus_sha256=_corpus.sha256(text), vocab=len(chars),
          unigram_entropy=_corpus.unigram_entropy(text),
          unigram_cross_entropy_val=_corpus.unigram_cross_entropy(
              train_text, val_text),
          loss_unit="nats per character",
          kwargs=dict(text=None if source != "user text" else "<user text>",
                      context=context, d_model=d_model, n_layers=n_layers,
                      n_heads=n_heads, batch_size=batch_size,
                      val_fraction=val_fraction, val_windows=val_windows),
      ))


# ----------------------------------------------------------------------------
# quadratic: the noisy quadratic model.
# ----------------------------------------------------------------------------


def quadratic(dim: int = 100, condition: float = 100.0, noise: float = 1.0,
              batch_size: int = 1) -> Task:
  """The noisy quadratic model (Zhang et al., NeurIPS 2019).

  ``L(w) = 0.5 sum_i h_i w_i**2`` with ``h_i`` log-spaced from 1 down to
  ``1 / condition``; the stochastic loss of a batch ``xi`` is
  ``0.5 sum_i h_i (w_i - xi_i)**2`` with ``xi_i ~ N(0, noise**2 / (h_i *
  batch_size))``, so the gradient noise has variance ``h_i noise**2 /
  batch_size``, proportional to the curvature as in the paper.  Starts at
  ``w ~ N(0, I)`` (the seed); validation loss is ``L(w)`` exactly (the
  training loss is larger by ``0.5 dim noise**2 / batch_size`` on average).

  References:
    Zhang, Li, Nado, Martens, Sachdeva, Dahl, Shallue & Grosse, *Which
    Algorithmic Choices Matter at Which Batch Sizes? Insights From a Noisy
    Quadratic Model*, NeurIPS 2019, https://arxiv.org/abs/1907.04164.
  """
  dim = _check_positive_int("dim", dim)
  batch_size = _check_positive_int("batch_size", batch_size)
  if not (isinstance(condition, (int, float)) and condition >= 1.0):
    raise ValueError(f"`condition` must be a number >= 1, got {condition!r}.")
  if not (isinstance(noise, (int, float)) and noise >= 0.0):
    raise ValueError(f"`noise` must be a number >= 0, got {noise!r}.")
  h = np.logspace(0.0, -math.log10(condition), dim).astype(np.float32)
  scale = jnp.asarray(noise / np.sqrt(h * batch_size), jnp.float32)
  hj = jnp.asarray(h)

  def init_params(key):
    return {"w": jax.random.normal(key, (dim,), jnp.float32)}

  def loss(params, batch):
    return 0.5 * total(hj * jnp.square(params["w"] - batch))

  def train_batch(key, step):
    del step
    # The barrier keeps XLA from folding `scale` into the constants inside
    # jax.random.normal, which it does in some programs and not in others
    # (a vmapped grid cell would then differ from the single run).
    z = jax.lax.optimization_barrier(jax.random.normal(key, (dim,), jnp.float32))
    return scale * z

  return Task(
      name="quadratic",
      init_params=init_params,
      loss=loss,
      train_batch=train_batch,
      val_batch=jnp.zeros((dim,), jnp.float32),
      defaults=TaskDefaults(steps=500, learning_rates=(1e-2, 3e-2, 1e-1),
                            ema_decay=0.98, eval_every=50),
      info=dict(
          description=f"noisy quadratic, dim {dim}, condition {condition:g}, "
                      f"noise {noise:g}, batch {batch_size}",
          kwargs=dict(dim=dim, condition=float(condition), noise=float(noise),
                      batch_size=batch_size)))


# ----------------------------------------------------------------------------
# rosenbrock.
# ----------------------------------------------------------------------------


def rosenbrock(noise: float = 0.1, init_scale: float = 0.1) -> Task:
  """Rosenbrock's function ``(1 - x)**2 + 100 (y - x**2)**2`` (minimum 0 at (1, 1)).

  Starts at (-1.2, 1) plus ``init_scale`` times a standard normal (the seed);
  the training loss adds ``<xi, (x, y)>`` with ``xi ~ N(0, noise**2 I)``
  (gradient noise); validation loss is the noise-free value.
  """
  if not (isinstance(noise, (int, float)) and noise >= 0.0):
    raise ValueError(f"`noise` must be a number >= 0, got {noise!r}.")
  if not (isinstance(init_scale, (int, float)) and init_scale >= 0.0):
    raise ValueError(
        f"`init_scale` must be a number >= 0, got {init_scale!r}.")
  start = jnp.asarray([-1.2, 1.0], jnp.float32)

  def init_params(key):
    return {"xy": start + np.float32(init_scale) * jax.random.normal(
        key, (2,), jnp.float32)}

  def loss(params, batch):
    x, y = params["xy"][0], params["xy"][1]
    value = jnp.square(1.0 - x) + 100.0 * jnp.square(y - x * x)
    return value + batch[0] * x + batch[1] * y

  def train_batch(key, step):
    del step
    z = jax.lax.optimization_barrier(jax.random.normal(key, (2,), jnp.float32))
    return np.float32(noise) * z

  return Task(
      name="rosenbrock",
      init_params=init_params,
      loss=loss,
      train_batch=train_batch,
      val_batch=jnp.zeros((2,), jnp.float32),
      defaults=TaskDefaults(steps=1000, learning_rates=(3e-3, 1e-2, 3e-2),
                            ema_decay=0.98, eval_every=100),
      info=dict(description=f"Rosenbrock 2-D, gradient noise {noise:g}",
                kwargs=dict(noise=float(noise), init_scale=float(init_scale))))


# ----------------------------------------------------------------------------
# Your own Flax model (Linen or NNX).
# ----------------------------------------------------------------------------

# Memory addresses in reprs (``<function f at 0x7f...>``) change from one
# process to the next; a fingerprint that a resumed study must match cannot
# contain them.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")
# Classes whose code is fixed by an installed package's version (their
# configuration is in the model's repr or graph definition); a user's own
# classes have their code hashed.
_LIBRARY_MODULES = ("builtins", "abc", "typing", "flax", "jax", "jaxlib",
                    "optax", "numpy", "ftrl_adam")


def _stable_repr(x: Any) -> str:
  return _ADDRESS.sub("", repr(x))


def _hash_array(h, leaf) -> None:
  if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
    h.update(str(leaf.dtype).encode())
    leaf = jax.random.key_data(leaf)
  a = np.asarray(leaf)
  h.update(f"{a.dtype}{a.shape}".encode())
  h.update(np.ascontiguousarray(a).tobytes())


def _hash_code(h, code) -> None:
  h.update(code.co_code)
  h.update(repr(code.co_names).encode())
  for const in code.co_consts:
    if inspect.iscode(const):
      _hash_code(h, const)
    else:
      h.update(_stable_repr(const).encode())


def _hash_value(h, value, depth: int = 0) -> None:
  """Feeds a Python value into ``h`` without memory addresses: arrays by
  content, functions by code, defaults and closure values (a few levels deep),
  containers item by item, anything else by its repr."""
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    _hash_array(h, value)
  elif isinstance(value, type):
    h.update(f"{value.__module__}.{value.__qualname__}".encode())
  elif isinstance(value, (tuple, list)) and depth < 8:
    h.update(f"{type(value).__name__}{len(value)}".encode())
    for v in value:
      _hash_value(h, v, depth + 1)
  elif isinstance(value, (set, frozenset)):  # no order across processes
    h.update(repr(sorted(_stable_repr(v) for v in value)).encode())
  elif isinstance(value, dict) and depth < 8:
    for k, v in value.items():
      h.update(_stable_repr(k).encode())
      _hash_value(h, v, depth + 1)
  elif (inspect.isfunction(value) or inspect.ismethod(value)
        or isinstance(value, functools.partial)
        or hasattr(value, "__wrapped__")) and depth < 4:
    _hash_callable(h, value, depth + 1)
  else:
    h.update(_stable_repr(value).encode())


def _hash_callable(h, fn, depth: int = 0) -> None:
  """A function's name, code, defaults and closure values (not the code of
  the functions it calls by global name)."""
  if isinstance(fn, functools.partial):
    h.update(b"partial")
    _hash_value(h, fn.func, depth)
    _hash_value(h, fn.args, depth)
    _hash_value(h, fn.keywords, depth)
    return
  fn = inspect.unwrap(fn, stop=lambda f: hasattr(f, "__code__"))
  fn = getattr(fn, "__func__", fn)  # a bound method: its function
  h.update(f"{getattr(fn, '__module__', '')}."
           f"{getattr(fn, '__qualname__', type(fn).__name__)}".encode())
  code = getattr(fn, "__code__", None)
  if code is None:
    h.update(_stable_repr(fn).encode())
    return
  _hash_code(h, code)
  _hash_value(h, getattr(fn, "__defaults__", None), depth)
  _hash_value(h, getattr(fn, "__kwdefaults__", None), depth)
  for cell in getattr(fn, "__closure__", None) or ():
    try:
      contents = cell.cell_contents
    except ValueError:  # an empty cell
      continue
    _hash_value(h, contents, depth)


def _hash_class(h, cls) -> None:
  """A class's name and, for every user class of its MRO, its methods and
  class attributes (not for library classes: see :data:`_LIBRARY_MODULES`)."""
  h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
  for klass in cls.__mro__:
    module = getattr(klass, "__module__", "") or ""
    if module.split(".")[0] in _LIBRARY_MODULES:
      continue
    h.update(f"class {klass.__qualname__}".encode())
    for attr, value in vars(klass).items():
      if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
      if isinstance(value, property):
        value = (value.fget, value.fset)
      elif attr.startswith("__") and attr.endswith("__") and not callable(
          value):
        continue  # __module__, __dict__, __doc__, dataclass fields (in repr)
      h.update(attr.encode())
      _hash_value(h, value, 1)


def _content_hash(model_part: Callable[[Any], None], loss_fn: Any,
                  *data: Any) -> str:
  """sha256 of what a user task computes: the model (``model_part(h)`` feeds
  its configuration, its classes' code and its initial parameters into the
  hash), the loss function's code and constants, and every data array.

  It goes into the task's ``info``, which the results folder's fingerprint
  includes, so a resumed study never reuses chunks trained on other data or
  another model of the same shapes.  Memory addresses are left out, so the
  same task built in another process has the same hash.
  """
  h = hashlib.sha256()
  model_part(h)
  h.update(b"loss")
  _hash_value(h, loss_fn)
  h.update(b"data")
  for leaf in jax.tree.leaves(data):
    _hash_array(h, leaf)
  return h.hexdigest()


# The model kinds flax_task accepts, for error messages.
_MODEL_ALLOWED = (
    "a flax.linen.Module instance (e.g. nn.Dense(2)), a flax.nnx.Module "
    "instance (e.g. nnx.Linear(3, 2, rngs=nnx.Rngs(0))) or a function "
    "rngs -> flax.nnx.Module (e.g. lambda rngs: nnx.Linear(3, 2, rngs=rngs))")


def _model_kind(model: Any) -> str:
  """``"linen"``, ``"nnx"`` (an instance) or ``"factory"``; else ValueError."""
  nnx_lib = sys.modules.get("flax.nnx")  # loaded if the user made an NNX model
  nnx_module = getattr(nnx_lib, "Module", None)
  if isinstance(model, type):
    if issubclass(model, nn.Module) or (
        nnx_module is not None and issubclass(model, nnx_module)):
      example = (f"lambda rngs: {model.__name__}(..., rngs=rngs)"
                 if not issubclass(model, nn.Module) else
                 f"{model.__name__}(...)")
      raise ValueError(
          f"`model` must be a module instance, not the class "
          f"{model.__name__} (pass e.g. {example}). `model` may be "
          f"{_MODEL_ALLOWED}.")
    raise ValueError(
        f"`model` must be {_MODEL_ALLOWED}; got the class {model.__name__}.")
  if isinstance(model, nn.Module):
    return "linen"
  if nnx_module is not None and isinstance(model, nnx_module):
    return "nnx"
  if inspect.isfunction(model) or inspect.ismethod(model) or isinstance(
      model, functools.partial):
    return "factory"
  raise ValueError(f"`model` must be {_MODEL_ALLOWED}; got "
                   f"{type(model).__name__}.")


def _linen_parts(model: nn.Module, example: Any):
  """(init_params, apply, hash_model, label) of a Linen module."""

  def init_params(key):
    return model.init(key, example)["params"]

  def apply(params, inputs):
    return model.apply({"params": params}, inputs)

  def hash_model(h):
    classes = []

    def record(next_fun, args, kwargs, context):
      classes.append(type(context.module))
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):  # every submodule class that runs
      variables = model.init(jax.random.key(0), example)
    h.update(b"linen")
    h.update(_stable_repr(model).encode())
    for cls in dict.fromkeys(classes):
      _hash_class(h, cls)
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
      h.update(jax.tree_util.keystr(path).encode())
      _hash_array(h, leaf)

  return init_params, apply, hash_model, f"Linen model {type(model).__name__}"


def _var_value(var):
  """The value of an nnx.Variable (``get_value`` where flax has it)."""
  get = getattr(var, "get_value", None)
  return get() if get is not None else var.value


def _path_str(path) -> str:
  return "/".join(str(k) for k in path)


def _at(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _same_value(a, b) -> bool:
  if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
    a = jax.random.key_data(a)
  if jax.dtypes.issubdtype(getattr(b, "dtype", None), jax.dtypes.prng_key):
    b = jax.random.key_data(b)
  a, b = np.asarray(a), np.asarray(b)
  return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
      a, b, equal_nan=a.dtype.kind in "fc")


def _nnx_parts(model: Any, example: Any, factory: bool):
  """(init_params, apply, hash_model, label) of an NNX module or factory.

  The module (for a factory: the one built with ``nnx.Rngs(0)``) is split once
  into its graph definition, its ``nnx.Param`` variables (what is trained) and
  the rest (constants in the loss).  ``apply`` merges fresh copies of them, so
  nothing outlives a call (no side effect under ``jit`` or ``vmap``).
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel

  if factory:
    try:
      instance = model(nnx.Rngs(0))
    except Exception as e:
      raise ValueError(
          f"`model` is a function, so it must build a flax.nnx.Module from an "
          f"nnx.Rngs; model(nnx.Rngs(0)) raised {e!r}.") from e
    if not isinstance(instance, nnx.Module):
      raise ValueError(
          f"`model` is a function, so it must return a flax.nnx.Module when "
          f"called with an nnx.Rngs; it returned {type(instance).__name__}. "
          f"`model` may be {_MODEL_ALLOWED}.")
  else:
    instance = model
  graphdef, params, rest = nnx.split(instance, nnx.Param, ...)
  flat_params = list(nnx.to_flat_state(params))
  flat_rest = list(nnx.to_flat_state(rest))

  def fresh(flat, value_of):
    return nnx.from_flat_state(
        [(path, var.replace(value_of(path, var))) for path, var in flat])

  def own_value(_, var):
    return _var_value(var)

  def merged(pure_params):
    return nnx.merge(
        graphdef, fresh(flat_params, lambda path, _: _at(pure_params, path)),
        fresh(flat_rest, own_value))

  # Refuse state that a forward pass updates (BatchNorm statistics in training
  # mode, the RNG counts of active Dropout): training would have to carry it
  # from step to step.  Variables created by the call (sown intermediates) are
  # harmless: they die with the merged copy.
  probe = nnx.merge(graphdef, fresh(flat_params, own_value),
                    fresh(flat_rest, own_value))
  probe(example)
  after = dict(nnx.to_flat_state(nnx.state(probe)))
  changed = [
      f"{_path_str(path)} ({type(var).__name__})"
      for path, var in flat_params + flat_rest
      if not isinstance(var, nnx.Intermediate) and path in after
      and not _same_value(_var_value(var), _var_value(after[path]))]
  if changed:
    raise ValueError(
        f"`model` updates its state when called ({', '.join(changed)}); "
        "flax_task trains the nnx.Param variables and keeps every other "
        "variable constant, so it cannot carry such state from step to step. "
        "Put the model in evaluation mode first (model.eval(), or "
        "use_running_average=True on BatchNorm and deterministic=True on "
        "Dropout): its other state is then used as constants. Or write a "
        "studies.Task of your own.")
  initial = nnx.to_pure_dict(params)

  if factory:

    def init_params(key):
      g, p, _ = nnx.split(model(nnx.Rngs(key)), nnx.Param, ...)
      if g != graphdef:
        raise ValueError(
            "`model` builds modules of different structures for different "
            "keys; flax_task needs one structure.")
      return nnx.to_pure_dict(p)
  else:

    def init_params(key):
      del key  # the instance's own parameters, for every seed
      return jax.tree.map(lambda a: a, initial)  # a new dict each call

  def apply(pure_params, inputs):
    return merged(pure_params)(inputs)

  def hash_model(h):
    h.update(b"nnx factory" if factory else b"nnx")
    if factory:
      _hash_callable(h, model)
    h.update(_stable_repr(graphdef).encode())
    for path, node in nnx.iter_graph(instance):
      if isinstance(node, nnx.Variable) or not nnx.graph.is_graph_node(node):
        continue  # variables are hashed below, static attributes via repr
      h.update(_path_str(path).encode())
      _hash_class(h, type(node))
      for attr, value in vars(node).items():
        if callable(value) and not isinstance(value, type) and not (
            nnx.graph.is_graph_node(value) or isinstance(value, nnx.Variable)):
          h.update(attr.encode())
          _hash_callable(h, value)
    for path, var in flat_params + flat_rest:
      h.update(f"{_path_str(path)}:{type(var).__name__}".encode())
      _hash_array(h, _var_value(var))

  label = f"NNX model {type(instance).__name__}"
  if factory:
    label += f" built per seed by {getattr(model, '__name__', 'a function')}"
  return init_params, apply, hash_model, label


def flax_task(
    model: Any,
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    train_data: Any,
    val_data: Any,
    *,
    batch_size: Optional[int] = None,
    num_batches: int = 256,
    accuracy: bool = False,
    name: str = "user",
    defaults: Optional[TaskDefaults] = None,
) -> Task:
  """Wraps a Flax model (Linen or NNX), a loss and data into a :class:`Task`.

  The model is one of:

  * a ``flax.linen.Module`` instance: ``init_params(key)`` is
    ``model.init(key, inputs[:1])["params"]`` (each seed draws its own initial
    parameters) and the model runs as ``model.apply({"params": p}, inputs)``;
  * a ``flax.nnx.Module`` instance: split once with ``nnx.split(model,
    nnx.Param, ...)``.  Its ``nnx.Param`` variables are what is trained, and
    **its own current values are the initial parameters of every seed** (the
    seed then only draws the batches): the model you pass is the model that is
    trained, and a study never touches it;
  * a function ``rngs -> flax.nnx.Module`` (e.g. ``lambda rngs: MLP(16,
    rngs=rngs)``): each seed's initial parameters are those of
    ``model(nnx.Rngs(key))``, the seed's key, like a Linen ``init``.

  For NNX, ``init_params`` returns the parameters as a nested dict of arrays
  (``nnx.to_pure_dict``) and the loss merges them with the graph definition
  and the model's other variables (BatchNorm statistics, RNG streams, any
  ``nnx.Variable``), which are constants: taken from the instance, or from
  ``model(nnx.Rngs(0))`` for a function.  A model whose call updates such
  state (BatchNorm in training mode, Dropout with rngs in training mode) is
  refused; call ``model.eval()`` first to use the state as constants.

  ``info["content_sha256"]`` identifies the task for a resumed study: the
  model (its configuration or graph definition, the code of its user-defined
  classes, its initial parameters, computed with key 0 for Linen and a
  function), the loss's code and constants, and every data array.

  Args:
    model: a Linen module, an NNX module, or a function ``rngs -> NNX
      module`` (above); it is called on the inputs alone.
    loss_fn: ``(outputs, targets) -> per-example losses (any shape) or a
      scalar``; per-example losses are averaged in a batching-independent
      order.
    train_data: either a tuple ``(inputs, targets)`` of arrays with the
      examples on axis 0 (batches of ``batch_size`` drawn with replacement, a
      fresh draw per step and seed), or any Python iterable of ``(inputs,
      targets)`` batches: its first ``num_batches`` batches are stacked and
      cycled through in order (then every seed sees the same batches).
    val_data: ``(inputs, targets)`` arrays, evaluated whole.
    batch_size: required with array ``train_data``.
    num_batches: how many batches to take from an iterable ``train_data``.
    accuracy: also report the arg-max accuracy of ``outputs`` against integer
      ``targets``.
    name: the task's name in tables.
    defaults: a :class:`TaskDefaults`; default 500 steps, learning rates
      (1e-3, 3e-3, 1e-2), EMA decay 0.99, evaluation every 50 steps.

  Returns:
    A :class:`Task`.

  Raises:
    ValueError: ``model`` is not one of the three kinds above (a module class
      is refused: pass an instance), an NNX model updates non-Param state
      when called, or bad data options.

  Example:
    >>> import numpy as np, optax, flax.linen as nn
    >>> from flax import nnx
    >>> from ftrl_adam import studies
    >>> x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    >>> y = (x.sum(1) > 0).astype(np.int32)
    >>> task = studies.flax_task(
    ...     nn.Dense(2), optax.softmax_cross_entropy_with_integer_labels,
    ...     (x, y), (x, y), batch_size=32, accuracy=True)
    >>> r = studies.train(task, b1=0.9, b2=0.99, learning_rate=0.05, seed=0,
    ...                   steps=100, ema_decay=0.9, eval_every=50)
    >>> bool(r["val_acc"] > 0.9)
    True
    >>> nnx_task = studies.flax_task(
    ...     nnx.Linear(3, 2, rngs=nnx.Rngs(0)),
    ...     optax.softmax_cross_entropy_with_integer_labels,
    ...     (x, y), (x, y), batch_size=32, accuracy=True)
    >>> r = studies.train(nnx_task, b1=0.9, b2=0.99, learning_rate=0.05,
    ...                   seed=0, steps=100, ema_decay=0.9, eval_every=50)
    >>> bool(r["val_acc"] > 0.9)
    True
  """
  kind = _model_kind(model)
  if not callable(loss_fn):
    raise ValueError("`loss_fn` must be callable (outputs, targets) -> loss.")
  val_data = jax.tree.map(jnp.asarray, tuple(val_data))
  if len(val_data) != 2:
    raise ValueError("`val_data` must be a pair (inputs, targets).")

  is_arrays = isinstance(train_data, tuple) and len(train_data) == 2 and all(
      hasattr(a, "shape") for a in jax.tree.leaves(train_data))
  if is_arrays:
    if batch_size is None:
      raise ValueError("`batch_size` is required when `train_data` is arrays.")
    batch_size = _check_positive_int("batch_size", batch_size)
    arrays = jax.tree.map(jnp.asarray, train_data)
    train_batch = _sample_rows(arrays, batch_size)
    example = jax.tree.map(lambda a: a[:1], arrays[0])
    source = "arrays"
  else:
    if isinstance(train_data, (str, bytes)) or not isinstance(
        train_data, Iterable):
      raise ValueError(
          "`train_data` must be a pair of arrays (inputs, targets) or an "
          f"iterable of such batches, got {type(train_data).__name__}.")
    num_batches = _check_positive_int("num_batches", num_batches)
    batches = list(itertools.islice(iter(train_data), num_batches))
    if not batches:
      raise ValueError("`train_data` yielded no batch.")
    stacked = jax.tree.map(lambda *b: jnp.stack([jnp.asarray(x) for x in b]),
                           *[tuple(b) for b in batches])
    n = len(batches)

    def train_batch(key, step):
      del key
      return jax.tree.map(lambda a: a[step % n], stacked)

    example = jax.tree.map(lambda a: a[0][:1], stacked[0])
    source = f"{n} batches from an iterable"

  if kind == "linen":
    init_params, apply, hash_model, label = _linen_parts(model, example)
  else:
    init_params, apply, hash_model, label = _nnx_parts(
        model, example, factory=kind == "factory")

  def reduce(value):
    return mean(value) if jnp.ndim(value) else jnp.asarray(value, jnp.float32)

  def loss(params, batch):
    inputs, targets = batch
    return reduce(loss_fn(apply(params, inputs), targets))

  def acc(params, batch):
    inputs, targets = batch
    return accuracy_of(apply(params, inputs), targets)

  return Task(
      name=name, init_params=init_params, loss=loss, train_batch=train_batch,
      val_batch=val_data, accuracy=acc if accuracy else None,
      defaults=defaults or TaskDefaults(
          steps=500, learning_rates=(1e-3, 3e-3, 1e-2), ema_decay=0.99,
          eval_every=50),
      info=dict(description=f"user Flax {label} ({source})",
                kwargs={},
                content_sha256=_content_hash(
                    hash_model, loss_fn, arrays if is_arrays else stacked,
                    val_data)))


# ----------------------------------------------------------------------------
# Registry.
# ----------------------------------------------------------------------------

TASKS: Mapping[str, Callable[..., Task]] = {
    "digits": digits,
    "charlm": charlm,
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
}


def task_options(name: str) -> tuple[str, ...]:
  """Keyword arguments accepted by the built-in task ``name``."""
  check_task_name(name)
  return tuple(inspect.signature(TASKS[name]).parameters)


def check_task_name(name: Any) -> str:
  if name not in TASKS:
    allowed = ", ".join(repr(k) for k in TASKS)
    raise ValueError(f"`task` must be one of {allowed}; got {name!r}.")
  return name


def make_task(name: str, **kwargs: Any) -> Task:
  """Builds the built-in task ``name`` with the factory's keyword arguments.

  Args:
    name: one of ``"digits"``, ``"charlm"``, ``"quadratic"``, ``"rosenbrock"``.
    **kwargs: options of that factory (:func:`digits`, :func:`charlm`,
      :func:`quadratic`, :func:`rosenbrock`).

  Raises:
    ValueError: unknown name (the allowed names are listed), an option the
      task does not take (its options are listed), or a bad option value.

  Example:
    >>> from ftrl_adam import studies
    >>> studies.make_task("quadratic", dim=10).name
    'quadratic'
  """
  check_task_name(name)
  allowed = task_options(name)
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise ValueError(
        f"Task {name!r} has no option {', '.join(map(repr, unknown))}; its "
        f"options are {', '.join(allowed)}.")
  return TASKS[name](**kwargs)
