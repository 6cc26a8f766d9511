"""Options shared by the ``ftrl-adam`` subcommands that run grids (private)."""

from __future__ import annotations

import argparse
import sys


def add_distributed_options(p: argparse.ArgumentParser) -> None:
  """--distributed, --coordinator, --num-processes, --process-id."""
  dist = p.add_argument_group(
      "several hosts", "start one process per host, each with the same options")
  dist.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first; on Slurm, "
                         "Open MPI or a TPU pod it finds the cluster itself, "
                         "elsewhere give the next three options (or "
                         "JAX_COORDINATOR_ADDRESS)")
  dist.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="address of process 0 (with --distributed)")
  dist.add_argument("--num-processes", type=int, default=None,
                    help="number of processes (with --distributed)")
  dist.add_argument("--process-id", type=int, default=None,
                    help="this process's index, 0..num-processes-1 (with "
                         "--distributed)")


def start_distributed(args: argparse.Namespace,
                       parser: argparse.ArgumentParser) -> None:
  """jax.distributed.initialize() for --distributed (before any JAX work)."""
  given = {k: v for k, v in (("coordinator_address", args.coordinator),
                             ("num_processes", args.num_processes),
                             ("process_id", args.process_id)) if v is not None}
  if not args.distributed:
    if given:
      parser.error("--coordinator, --num-processes and --process-id need "
                   "--distributed")
    return
  if args.num_processes is not None and args.num_processes < 1:
    parser.error(f"--num-processes must be >= 1, got {args.num_processes}")
  if args.process_id is not None and not (
      0 <= args.process_id < (args.num_processes or sys.maxsize)):
    parser.error(f"--process-id must be in 0..num-processes-1, got "
                 f"{args.process_id}")
  import jax  # pylint: disable=import-outside-toplevel
  try:
    jax.distributed.initialize(**given)
  except (ValueError, RuntimeError) as e:
    parser.error(f"--distributed: jax.distributed.initialize() failed: {e}")
