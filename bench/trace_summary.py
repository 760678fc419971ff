"""Where a profiled step's time goes, from the perfetto trace a bench script's ``--trace`` wrote.

    python -m bench.trace_summary TRACE.json.gz [--top 25]

Prints three tables: the busy time of every timeline in the trace (process and thread), the
operations that took the most time, and those operations in coarse kinds (convolution, matrix
product, reduction, copy or transpose, other), each as a share of the summed operation time.

Which events count as operations: on an accelerator, the events of the device's timelines
(processes named ``/device:...``), taken from the timelines named "XLA Ops" where the trace has
them and from the streams otherwise, so that a kernel is not counted once as a kernel and again
as the op it implements; on a CPU, the events XLA tags with an ``hlo_op``. Operations are named by
their ``hlo_op`` and program (``hlo_module``) where the event has them (fusions keep XLA's names,
e.g. ``convolution.12 (jit_critic_update)``), else by the event's own name (a kernel's).
"""

from __future__ import annotations

import collections
import gzip
import json
import re

from absl import app, flags

KINDS = (  # first match wins; matched against the hlo_op and the event's name (not the program's)
  ("convolution", re.compile(r"conv|fprop|dgrad|wgrad|cudnn", re.I)),
  ("matrix product", re.compile(r"gemm|nvjet|cublas|matmul|\bdot\b|dot_general|ynn", re.I)),
  ("reduction", re.compile(r"reduce|reduction", re.I)),
  ("copy or transpose", re.compile(r"copy|transpose|memcpy|memset", re.I)),
)


def load(path: str) -> tuple[list[dict], dict, dict]:
  """The trace's complete events, and the names of its processes and threads."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  processes = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
  threads = {
    (e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
  }
  return [e for e in events if e.get("ph") == "X" and e.get("dur") is not None], processes, threads


def operations(events: list[dict], processes: dict, threads: dict) -> tuple[list[dict], str]:
  """The events that are operations (see the module docstring), and a line saying which were taken."""
  device = [e for e in events if processes.get(e["pid"], "").startswith("/device:")]
  if device:
    line = lambda e: threads.get((e["pid"], e["tid"]), "")
    xla_ops = [e for e in device if "XLA Ops" in line(e)]
    if xla_ops:
      return xla_ops, "accelerator timelines named 'XLA Ops'"
    streams = [e for e in device if "Stream" in line(e)] or device
    return streams, "device streams"
  return [e for e in events if "hlo_op" in (e.get("args") or {})], "host events tagged with an hlo_op (a CPU run)"


def kind(name: str) -> str:
  for label, pattern in KINDS:
    if pattern.search(name):
      return label
  return "other"


_TOP = flags.DEFINE_integer("top", 25, "event names listed")


def main(argv) -> None:
  if len(argv) != 2:
    raise app.UsageError("usage: python -m bench.trace_summary TRACE (a .json or .json.gz perfetto trace)")
  path = argv[1]
  events, processes, threads = load(path)
  if not events:
    raise SystemExit(f"{path}: the trace has no complete ('X') events; was anything run under the profiler?")

  busy = collections.Counter()
  for e in events:
    busy[(processes.get(e["pid"], str(e["pid"])), threads.get((e["pid"], e["tid"]), str(e["tid"])))] += e["dur"]
  print(f"Trace {path}: {len(events)} events")
  print("\n| process | timeline | summed event time, ms |\n|---|---|---|")
  for (process, thread), us in busy.most_common():
    print(f"| {process} | {thread} | {us / 1e3:.2f} |")

  ops, taken = operations(events, processes, threads)
  if not ops:
    print("\nNo operation events found (no accelerator timelines and no hlo_op tags).")
    return
  total = sum(e["dur"] for e in ops)
  by_name, count, kinds = collections.Counter(), collections.Counter(), collections.Counter()
  for e in ops:
    tags = e.get("args") or {}
    op = tags.get("hlo_op") or e["name"]
    # Op names repeat across programs (the critic's and the generator's step): keep them apart.
    name = f"{op} ({tags['hlo_module']})" if tags.get("hlo_module") else op
    by_name[name] += e["dur"]
    count[name] += 1
    kinds[kind(f"{op} {e['name']}")] += e["dur"]
  span = (max(e["ts"] + e["dur"] for e in ops) - min(e["ts"] for e in ops)) / 1e3
  print(f"\nOperations: {taken}; {len(ops)} events, {total / 1e3:.2f} ms summed over a {span:.2f} ms span")
  print(f"\n| operation (top {_TOP.value}) | calls | ms | share |\n|---|---|---|---|")
  for name, us in by_name.most_common(_TOP.value):
    print(f"| {name} | {count[name]} | {us / 1e3:.2f} | {100 * us / total:.1f} % |")
  print("\n| kind | ms | share |\n|---|---|---|")
  for label, us in kinds.most_common():
    print(f"| {label} | {us / 1e3:.2f} | {100 * us / total:.1f} % |")


if __name__ == "__main__":
  app.run(main)
