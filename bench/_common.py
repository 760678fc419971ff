"""The host-allocator switch every benchmark shares (see sagan_jax/runtime.py)."""

from __future__ import annotations

import argparse

from sagan_jax import runtime


def add_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--host_allocator", choices=["tuned", "default"], default="tuned",
      help="'tuned' applies sagan_jax.runtime.configure_host_allocator as train.py does; "
           "'default' keeps glibc's settings (to measure the difference)",
  )


def apply(args: argparse.Namespace) -> str:
  """Applies the choice (before any computation) and describes it for the table's header."""
  if args.host_allocator == "tuned":
    return "host allocator tuned" if runtime.configure_host_allocator() else "host allocator tuning unavailable here"
  return "default host allocator"
