"""What every benchmark shares: the CPU fast path's flags, the model's FLOP count, the device's matmul rate.

Benchmarks run as modules from the repository root: ``python -m bench.NAME [--flags]``.

MFU (model FLOPs utilisation) is stated against the rate this device *measures* for a large
square matmul in the compute dtype (`matmul_rate`), not a datasheet peak, so a figure means
"share of what this chip does on its best-case kernel" and is comparable across machines.
"""

from __future__ import annotations

import functools
import glob
import math
import os
import platform
import shutil
import sys
import tempfile
import time

import jax
import jax.extend
import jax.numpy as jnp
from absl import flags

from sagan_jax import cpu
from sagan_jax.models.layers import Layers

LAYERS = ("auto", "cpu", "cpu_products", "flax")


flags.DEFINE_enum(
  "host_allocator",
  "tuned",
  ["tuned", "default"],
  "'tuned' applies sagan_jax.cpu.configure_host_allocator as train.py does on a CPU host; "
  "'default' keeps glibc's settings (to measure the difference)",
)
flags.DEFINE_string(
  "layers",
  "auto",
  "comma list of the networks' layers to time in turn: auto (what train.py picks here), cpu "
  "(sagan_jax.cpu.layers), cpu_products (the same with products for every filter gradient), flax",
)
flags.DEFINE_string(
  "trace",
  None,
  "after timing, profile one more step of the first row and write its perfetto trace to this file "
  "(python -m bench.trace_summary FILE says where the accelerator time goes)",
)


def apply(args=flags.FLAGS) -> str:
  """Applies the allocator choice (before any computation) and describes it for the table's header."""
  if args.host_allocator == "tuned":
    applied = cpu.configure_host_allocator()  # itself a no-op on accelerator hosts
    return "host allocator tuned" if applied else "host allocator tuning unavailable here"
  return "default host allocator"


def layers(name: str) -> Layers:
  """The `Layers` a ``--layers`` name stands for."""
  if name not in LAYERS:
    raise SystemExit(f"--layers: {name!r} is not one of {', '.join(LAYERS)}")
  if name == "auto":
    return Layers() if cpu.accelerator_host() else cpu.layers()
  return {"cpu": cpu.layers(), "cpu_products": cpu.layers(xla_filter_gradients=False), "flax": Layers()}[name]


def trace(fn, path: str) -> None:
  """Runs ``fn`` under `jax.profiler.trace` and copies the perfetto trace (gzipped JSON) to ``path``.

  The profiler writes it several folders down (``plugins/profile/<time>/``); one flat file is what a
  remote machine's output folder can hand back.
  """
  with tempfile.TemporaryDirectory(prefix="sagan_jax_trace_") as log_dir:
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
      fn()
    found = glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not found:
      raise RuntimeError(f"jax.profiler.trace wrote no perfetto_trace.json.gz under {log_dir}")
    shutil.copyfile(found[0], path)
  print(f"  trace of one step: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)", file=sys.stderr)


def model_flops(fn, *args) -> float:
  """The multiply-add FLOPs (2 per MAC) of every convolution and matrix product in ``fn(*args)``.

  Read from the traced jaxpr, so it is the same on every backend and counts what the program
  asks for, not what a compiler lowered it into: XLA's cost analysis does not count cuDNN's
  custom calls, so on an H200 it gave 191 GFLOP for a generator update of tens of TFLOP. A
  convolution counts its whole window, padding taps included, but not the zeros a dilated input
  inserts; scans count their body ``length`` times; elementwise work is left out, as MFU
  conventionally does.
  """
  return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      out = eqn.outvars[0].aval.shape
      rhs = eqn.invars[1].aval.shape
      spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, *spatial)
      window = math.prod(rhs[d] for d in spec[2:])
      # A dilated input (a transposed or strided convolution's gradient) is mostly inserted zeros.
      dilated = math.prod(eqn.params["lhs_dilation"])
      total += 2.0 * math.prod(out) * window * rhs[spec[1]] / dilated
    elif name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
    times = eqn.params.get("length", 1) if name == "scan" else 1
    inner = [_jaxpr_flops(j) for j in _sub_jaxprs(eqn.params)]
    if name == "cond":  # one branch runs
      total += max(inner, default=0.0)
    else:
      total += times * sum(inner)
  return total


def _sub_jaxprs(params):
  for value in params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


@functools.cache
def matmul_rate(dtype: str) -> float:
  """FLOP/s of a square matmul on the first device in ``dtype`` (float32 accumulation for bfloat16).

  8192² on accelerators, 2048² on CPU (large enough to reach the BLAS/GEMM plateau there); the
  best of 5 timed calls after a warm-up. The operands are random normal: constant ones or zeros
  toggle few bits and read high on GPUs (an H200's bf16 product: 894 TFLOP/s on zeros, 788 on
  random data), which would understate every MFU.
  """
  device = jax.devices()[0]
  n = 2048 if device.platform == "cpu" else 8192
  a = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype), device)
  f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  f(a, a).block_until_ready()
  best = float("inf")
  for _ in range(5):
    start = time.perf_counter()
    f(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best


def device_line() -> str:
  d = jax.devices()[0]
  cpu = f" on {platform.processor() or platform.machine()}" if d.platform == "cpu" else ""
  return f"{d.platform} ({d.device_kind}{cpu}) × {len(jax.devices())}; jax {jax.__version__}"


def mfu(flop_per_second: float, dtype: str) -> str:
  """``flop_per_second`` as a share of the device's measured ``dtype`` matmul rate, e.g. '41.2 %'."""
  return f"{100 * flop_per_second / matmul_rate(dtype):.1f} %"


_SYNTHETIC = os.path.join(os.path.dirname(__file__), "..", "configs", "synthetic.py")


def sagan_config_at(scale: str, dtype: str = "float32"):
  """The SA-GAN config at a benchmark scale: cpu (the tests'), synthetic (the main job's), paper (256×128)."""
  import importlib.util

  from sagan_jax.sagan import apply_tiny_scale, sagan_config

  if scale == "synthetic":
    spec = importlib.util.spec_from_file_location("synthetic_config", _SYNTHETIC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config().sagan
  else:  # "paper": the defaults (256×128, 64 features, 9 blocks, 70×70 PatchGAN, SPGAN's SiaNet)
    c = sagan_config()
    if scale == "cpu":
      apply_tiny_scale(c)
  c.dtype = dtype
  return c
