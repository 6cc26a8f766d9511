"""Specification of ftrl_adam.regret.bounds: the bound D3/D4 and the orders/closed forms.

Everything is checked against an independent float64 NumPy computation of the
formulas of MATH.md section 3 (offline sums, not the online recursions).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ftrl_adam import regret
from ftrl_adam import testing


def d3_offline(g, b1, b2, c, D, u=None):
  """D3 in float64 from its offline definition (per coordinate, summed)."""
  g = np.asarray(g, np.float64)
  T = g.shape[0]
  V = np.zeros_like(g)                      # V[t-1] = V_t
  for t in range(T):
    V[t] = (b2 * V[t - 1] if t else 0.0) + g[t] ** 2
  Vprev = np.concatenate([np.zeros_like(g[:1]), V[:-1]])
  w = b1 ** (T - 1 - np.arange(T))[:, None]           # b1^{T-t}
  e = np.sum(w * np.maximum(0.0, b1 * np.sqrt(Vprev) - np.sqrt(V)), axis=0)
  with np.errstate(divide="ignore", invalid="ignore"):
    stab = np.where(Vprev > 0, c * g ** 2 / (2 * b1 * np.sqrt(Vprev)), np.inf)
  sigma = np.sum(w * np.minimum(stab, 2 * D * np.abs(g)), axis=0)
  uu = D ** 2 if u is None else np.asarray(u, np.float64) ** 2
  return float(np.sum(uu / (2 * c) * np.sqrt(V[-1]) + D ** 2 / (2 * c) * e
                      + sigma)), V[-1]


@jax.jit
def _streams(g, b1, b2, c, D):
  def body(s, gt):
    return regret.bounds.update_streams(s, gt, b1=b1, b2=b2, c=c, radius=D), None
  return jax.lax.scan(body, regret.bounds.init_streams(g.shape[1]), g)[0]


@pytest.mark.parametrize("b1,b2", [(0.5, 0.25), (0.9, 0.5), (0.9, 0.999),
                                   (0.99, 0.9), (0.999, 0.9999)])
def test_online_streams_equal_offline_d3(b1, b2):
  rng = np.random.default_rng(0)
  g = rng.standard_normal((200, 3)) * (rng.random((200, 3)) < 0.7)
  g[:5, 0] = 0.0   # a coordinate that starts with zero gradients
  g32 = np.asarray(g, np.float32)
  c, D = 0.7, 1.3
  u = np.array([0.5, -1.3, 0.0])
  s = _streams(jnp.asarray(g32), b1, b2, c, D)
  b1f, b2f = float(np.float32(b1)), float(np.float32(b2))
  ref, v_ref = d3_offline(g32, b1f, b2f, c, D)
  ref_u, _ = d3_offline(g32, b1f, b2f, c, D, u)
  np.testing.assert_allclose(np.asarray(s.v), v_ref, rtol=2e-5)
  np.testing.assert_allclose(float(regret.d3_bound(s, c=c, radius=D)), ref,
                             rtol=2e-5)
  np.testing.assert_allclose(
      float(regret.d3_bound(s, c=c, radius=D, u=u)), ref_u, rtol=2e-5)
  if b1 <= np.sqrt(b2):   # the regulariser-change term vanishes
    assert float(jnp.max(s.e)) == 0.0


def test_ball_streams_use_global_norms():
  g = jnp.array([[3.0, 4.0], [0.0, 0.0], [-6.0, 8.0]])
  s = regret.bounds.init_streams(2, "ball")
  for gt in g:
    s = regret.bounds.update_streams(s, gt, b1=0.5, b2=0.5, c=1.0, radius=2.0,
                              domain="ball")
  # V = ((25 * 0.5) + 0) * 0.5 + 100; first round min is 2 D ||g|| = 20.
  assert float(s.v) == pytest.approx(106.25)
  np.testing.assert_allclose(
      float(s.sigma),
      0.25 * 20.0 + 0.5 * 0.0 + min(100.0 / (2 * 0.5 * np.sqrt(12.5)), 40.0),
      rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(b1=st.floats(0.3, 0.999), b2=st.floats(0.09, 0.9999),
       seed=st.integers(0, 2**16), scale=st.floats(0.01, 100.0))
def test_d4_dominates_d3_when_b1_le_sqrt_b2(b1, b2, seed, scale):
  """D4 is derived from D3 (MATH.md): D3 <= D4 on every sequence, beta <= 1."""
  if b1 > np.sqrt(b2):
    b1, b2 = np.sqrt(b2) * 0.999, b2
  g = np.random.default_rng(seed).standard_normal((64, 2)) * scale
  s = _streams(jnp.asarray(g, jnp.float32), b1, b2, 1.0, 1.0)
  d3 = float(regret.d3_bound(s, c=1.0, radius=1.0))
  d4 = float(regret.d4_bound(s.v, b1=b1, b2=b2, c=1.0, radius=1.0))
  assert d3 <= d4 * (1 + 1e-5)


def test_orders_meet_at_b2_equal_b1_squared():
  """At b2 = b1**2 the switch, alternating and minimax orders coincide [D]."""
  b1 = jnp.array([0.3, 0.5, 0.9, 0.99, 0.999])
  m = regret.minimax_order(2.0, 3.0, b1)
  np.testing.assert_allclose(m, 6.0 / np.sqrt(1 - np.float32(b1) ** 2),
                             rtol=1e-6)
  for f in (regret.switch_order, regret.alternating_order,
            regret.oblivious_order):
    np.testing.assert_allclose(f(2.0, 3.0, b1, b1 ** 2), m, rtol=1e-5)
  # Away from the diagonal the oblivious worst case is strictly larger.
  assert float(regret.oblivious_order(1, 1, 0.9, 0.5)) > float(
      regret.minimax_order(1, 1, 0.9))
  assert float(regret.oblivious_order(1, 1, 0.9, 0.99)) > float(
      regret.minimax_order(1, 1, 0.9))
  np.testing.assert_allclose(regret.switch_order(1.0, 1.0, 0.5, 0.99), 2.0)
  np.testing.assert_allclose(regret.switch_order(1.0, 1.0, 0.99, 0.96), 5.0,
                             rtol=1e-5)


def test_switch_lengths():
  L, k = regret.switch_lengths(0.9, 0.75, kappa=2.0)
  assert (int(L), int(k)) == (32, 4)
  L, k = regret.switch_lengths(0.5, 0.99)
  assert (int(L), int(k)) == (800 + 1, 2)   # float32(1 - 0.99) < 0.01


def _literal_eta_and_preclip(g, b1, b2, c):
  """eta_t = c b1^{t-1} / sqrt(V_{t-1}), x~_t = -eta_t H_{t-1} in float64."""
  T = len(g)
  eta, x = np.full(T, np.inf), np.zeros(T)
  V = H = 0.0
  for t in range(1, T + 1):
    if t > 1:
      eta[t - 1] = c * b1 ** (t - 1) / np.sqrt(V)
      x[t - 1] = -eta[t - 1] * H
    V = b2 * V + g[t - 1] ** 2
    H += b1 ** (-t) * g[t - 1]
  return eta, x


@pytest.mark.parametrize("b1,b2,kappa", [(0.5, 0.75, 1.0), (0.9, 0.5, 2.0),
                                         (0.8, 0.9, 0.5)])
def test_switch_closed_forms_equal_literal_ftrl(b1, b2, kappa):
  b1f, b2f = float(np.float32(b1)), float(np.float32(b2))
  L, k = (int(x) for x in regret.switch_lengths(b1, b2, kappa))
  adv = regret.switch(2.5, b1, b2, kappa)
  t = np.arange(1, L + k + 1)
  g = np.asarray(jax.vmap(lambda s: adv.gradient(s, None, 1)[0])(t),
                 np.float64)
  assert np.all(g[:L] == 2.5 * (-1.0) ** t[:L]) and np.all(g[L:] == -2.5)
  eta, x = _literal_eta_and_preclip(g, b1f, b2f, c=0.7)
  np.testing.assert_allclose(
      testing.switch_eta(t, c=0.7, G=2.5, b1=b1, b2=b2), eta, rtol=1e-5)
  np.testing.assert_allclose(
      testing.switch_pre_clip_play(t, c=0.7, b1=b1, b2=b2, L=L), x, rtol=1e-4,
      atol=1e-6)
