"""Where a command's XLA compile time goes: compiles and seconds per program, in this process.

Runs a Python module or script in this process with XLA's backend compile timed per program name
(the jitted function's name, or the primitive's for an eager operation), then prints the table.
Programs compiled in subprocesses (train.py's multi-process runs, the bench scripts' children) are
not seen; programs served from the persistent compilation cache are not compiled, so not counted.

Usage:
  python -m bench.compile_profile [--top 40] -- -m pytest -q -p no:xdist tests/test_x.py::test_y
  python -m bench.compile_profile -- train.py --config=tests/tiny_config.py --workdir=/tmp/run ...
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import runpy
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def recording() -> Iterator[dict[str, list]]:
  """Yields ``{program name: [compiles, seconds]}``, filled while the block runs."""
  from jax._src import compiler  # the one place every backend compile passes through

  stats: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
  original = compiler.backend_compile_and_load

  def timed(backend, module, *args, **kwargs):
    try:
      name = str(module.operation.attributes["sym_name"]).strip('"')
    except (AttributeError, KeyError):
      name = "(unnamed)"
    start = time.perf_counter()
    try:
      return original(backend, module, *args, **kwargs)
    finally:
      stats[name][0] += 1
      stats[name][1] += time.perf_counter() - start

  compiler.backend_compile_and_load = timed
  try:
    yield stats
  finally:
    compiler.backend_compile_and_load = original


def table(stats: dict[str, list], top: int) -> str:
  """A markdown table of the ``top`` programs by compile time, under a line with the totals."""
  count, seconds = sum(c for c, _ in stats.values()), sum(s for _, s in stats.values())
  rows = sorted(stats.items(), key=lambda kv: -kv[1][1])[:top]
  lines = [f"{count} compiles, {seconds:.1f} s", "| program | compiles | seconds |", "|---|---|---|"]
  lines += [f"| {name} | {c} | {s:.2f} |" for name, (c, s) in rows]
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--top", type=int, default=40, help="programs to list, longest first")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then '-m MODULE ARGS' or 'SCRIPT ARGS'")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command or (command[0] == "-m" and len(command) < 2):
    parser.error("give the command after --: '-m MODULE [ARGS]' or 'SCRIPT [ARGS]'")
  status = 0
  with recording() as stats:
    try:
      if command[0] == "-m":
        sys.argv = command[1:]
        runpy.run_module(command[1], run_name="__main__", alter_sys=True)
      else:
        sys.argv = command
        runpy.run_path(command[0], run_name="__main__")
    except SystemExit as e:  # pytest and absl end with SystemExit; the table is printed either way
      status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  print(table(stats, args.top))
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
