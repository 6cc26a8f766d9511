"""Ctrl-C at any moment: one clean stop, never a traceback from a callback.

A grid traced with progress on compiles a host callback bound to its own
``Progress`` (no module-level stack); after the run ends or is interrupted,
the callback prints nothing.  Here a real SIGINT lands many times, at
different points of a run (tracing, compiling, inside a chunk whose rounds
report progress, between chunks), in one process and in the CLI.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

_CHILD = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp
    from ftrl_adam import grid

    T = 400_000

    def cell(c):
      def body(x, t):
        grid.report_rounds(t, T, times=2000)
        return x * 0.999 + c["b1"], None
      x, _ = jax.lax.scan(body, 0.0, jnp.arange(1, T + 1))
      return {"x": x}

    table = grid.product(b1=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    print("ready", flush=True)
    runs = 0
    while True:
      try:
        grid.run_grid(cell, table, chunk_size=2,
                      progress=grid.Progress(min_interval=0.0))
        runs += 1
      except KeyboardInterrupt:
        print("interrupted", flush=True)
      if sys.stdin.readline().strip() == "stop":
        break
    print("runs", runs, flush=True)
""")


def test_sigint_at_many_points_of_a_run_leaves_no_traceback():
  proc = subprocess.Popen(
      [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "ready"
    delays = (0.05, 0.3, 0.8, 0.15, 1.2, 0.5)
    interrupted = 0
    for delay in delays:
      time.sleep(delay)
      proc.send_signal(signal.SIGINT)
      line = proc.stdout.readline().strip()   # "interrupted" (or a run ended)
      interrupted += line == "interrupted"
      proc.stdin.write("go\n")
      proc.stdin.flush()
    time.sleep(0.5)     # callbacks of interrupted programs may still fire
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err[-3000:]
  assert interrupted >= len(delays) // 2, (interrupted, out)
  assert "Traceback" not in err and "Error" not in err, err[-3000:]
  assert "% (round" in err    # the rounds were reported while running


def test_ctrl_c_in_the_cli_is_one_line_and_exit_130(tmp_path):
  out = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  for delay in (0.0, 2.0):     # after the size line: compiling, running
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftrl_adam.cli", "regret", "--b1", "0.5,0.9",
         "--b2", "0.25,0.81,0.99", "--seeds", "4", "--T", "2000000", "--d", "2",
         "--adversaries", "gaussian", "--chunk-size", "6", "--no-plots",
         "--out", str(out)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()     # the size line: JAX is imported
    assert first.startswith("beta-grid:"), first
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "interrupted" in err and "run the same command again" in err
