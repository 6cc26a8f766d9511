"""The built-in training tasks: digits, charlm, quadratic, rosenbrock (nothing downloaded).

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

Each is a function returning a :class:`~ftrl_adam.lab.studies.task.Task`;
:mod:`ftrl_adam.lab.studies.registry` names them (``make_task("digits")``).
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _checks
from ftrl_adam.lab.studies import _corpus
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.task import TaskDefaults
from ftrl_adam.lab.studies.task import accuracy_of
from ftrl_adam.lab.studies.task import check_fraction
from ftrl_adam.lab.studies.task import cross_entropy
from ftrl_adam.lab.studies.task import sample_rows
from ftrl_adam.lab.studies.task import total


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
  hidden = tuple(_checks.check_positive_int("hidden", h) for h in hidden)
  batch_size = _checks.check_positive_int("batch_size", batch_size)
  val_fraction = check_fraction("val_fraction", val_fraction)
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
      train_batch=sample_rows((x_tr, y_tr), batch_size),
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


def _char_splits(text: str, context: int, val_fraction: float,
                 val_windows: int) -> tuple[str, np.ndarray, np.ndarray, int]:
  """(vocabulary, training ids, validation windows, validation length)."""
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
  return chars, train_ids, windows, n_val


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
  context = _checks.check_positive_int("context", context)
  d_model = _checks.check_positive_int("d_model", d_model)
  n_layers = _checks.check_positive_int("n_layers", n_layers)
  n_heads = _checks.check_positive_int("n_heads", n_heads)
  batch_size = _checks.check_positive_int("batch_size", batch_size)
  val_windows = _checks.check_positive_int("val_windows", val_windows)
  val_fraction = check_fraction("val_fraction", val_fraction)
  if d_model % n_heads:
    raise ValueError(
        f"`d_model` ({d_model}) must be a multiple of `n_heads` ({n_heads}).")
  chars, train_ids, windows, n_val = _char_splits(text, context,
                                                 val_fraction, val_windows)
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
  dim = _checks.check_positive_int("dim", dim)
  batch_size = _checks.check_positive_int("batch_size", batch_size)
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
