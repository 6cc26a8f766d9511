"""Sharding types stable (STYLE.md): optimizer state is laid out like the params.

Runs in a subprocess with 8 simulated CPU devices.  For each transform, the
state made by ``init`` (from sharded arrays and from sharded
``jax.ShapeDtypeStruct``s) and the state and updates after a jitted step have
the params' sharding.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
  import jax, jax.numpy as jnp, numpy as np, optax
  import ftrl_adam as fa
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  assert len(jax.devices()) == 8, jax.devices()
  mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("a", "b"))
  sh = NamedSharding(mesh, P("a", "b"))
  params = {"w": jax.device_put(jnp.ones((8, 4)), sh), "b": None}
  abstract = {"w": jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=sh), "b": None}
  txs = {
      "ftrl": fa.ftrl_adam(0.1),
      "ball": fa.ftrl_adam(0.1, radius=0.1, domain="ball"),
      "ema": optax.chain(fa.ftrl_adam(0.1), fa.ema_params(0.9)),
      "conversion": fa.online_to_nonconvex(fa.ftrl_adam(0.1), key=jax.random.key(0)),
  }
  def big(tree):
    return [x for x in jax.tree.leaves(tree) if getattr(x, "shape", ()) == (8, 4)]
  for name, tx in txs.items():
    # ftrl_adam's state is zeros, so init works on abstract (sharded) params
    # directly; the EMA and the conversion copy the params' values, so they
    # need concrete params.
    states = [tx.init(params)] + ([tx.init(abstract)] if name in ("ftrl", "ball") else [])
    for state in states:
      leaves = big(state)
      assert leaves, name
      for x in leaves:
        assert x.sharding.is_equivalent_to(sh, 2), (name, x.sharding)
    u, state = jax.jit(tx.update)({"w": jnp.ones((8, 4)), "b": None}, tx.init(params), params)
    for x in big(state) + [u["w"]]:
      assert x.sharding.is_equivalent_to(sh, 2), (name, "after update", x.sharding)
  print("OK")
""")


def test_state_and_updates_keep_the_params_sharding():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
