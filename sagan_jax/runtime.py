"""Process-level settings for the host (CPU) side of a run.

XLA's CPU runtime allocates a fresh buffer for every intermediate array of every step and frees it
when the step ends. With glibc's default malloc settings, image-sized buffers are mapped with
``mmap`` and unmapped on ``free`` (or trimmed off the heap), so every step pays for ``mmap`` /
``munmap`` calls, TLB shoot-downs across XLA's threads and fresh page faults. Measured on a 2-core
CPU (``bench/bench_warp.py``, 8×256×128×4): the warp's forward+backward pass takes 25 ms with the
defaults and 11 ms with the settings below. The gain is not guaranteed on every process start:
page-fault counts per step vary from near zero to the default's, and 2 of 15 measured benchmark
runs had a share of slow repeats.

`configure_host_allocator` fixes glibc's mmap threshold at its maximum and keeps a pad of freed
memory at the top of the heap. It is called by ``train.py``, ``evaluate.py``, the mask CLI and
the benchmarks, which own their processes; the library never calls it on import, because malloc
settings belong to the whole process. Costs: up to ``top_pad_mb`` of freed memory stays resident
per malloc arena. Accelerator runs are unaffected apart from host-side buffers.

`jit_init` compiles programs that run once per process, the networks' parameter initialisation,
without XLA:CPU's backend optimisations: those programs are random-number generation (the forward
pass ``init`` traces is dead code to XLA), and optimising their hundred-odd fusions cost more
than running them ever does. Measured on the 2-core CPU: SA-GAN's tiny generator's init compiles
in 0.8 s instead of 7.4 s, the U-Net's in 1.8 s instead of 8.7 s, ResNet-50's in 6.4 s instead of
10.3 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable

import jax

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2, which is 32 MiB on 64-bit systems.
_MAX_MMAP_THRESHOLD_MB = 32


@functools.cache
def _glibc() -> ctypes.CDLL | None:
  """The C library when it is glibc (has ``mallopt``), else None (macOS, musl, Windows)."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
    libc.mallopt  # noqa: B018
  except (OSError, AttributeError):
    return None
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  libc.mallopt.restype = ctypes.c_int
  return libc


def configure_host_allocator(top_pad_mb: int = 256, mmap_threshold_mb: int = _MAX_MMAP_THRESHOLD_MB) -> bool:
  """Keeps freed host memory mapped between XLA steps (glibc only); returns whether it applied.

  Sets glibc's ``M_MMAP_THRESHOLD`` (allocations below it come from the heap instead of fresh
  ``mmap`` calls; setting it also stops glibc from adjusting it dynamically) and ``M_TOP_PAD``
  (extra memory requested whenever the heap grows and kept when it shrinks). Both must be set:
  a pad alone, set before the dynamic threshold has grown, leaves every image-sized buffer on
  ``mmap``. Call it before the first computation: applied after a jitted step had already run, it
  measured no gain. Environment variables ``MALLOC_TOP_PAD_`` / ``MALLOC_MMAP_THRESHOLD_`` set by the user
  win: they are applied by glibc at start-up and this function leaves them alone.

  Args:
    top_pad_mb: memory kept at the top of the heap, MiB.
    mmap_threshold_mb: allocations at or above this size still use ``mmap``, MiB (at most 32).

  Returns:
    True when the settings were applied, False on a C library without ``mallopt`` or when the
    user's environment already sets them.
  """
  if not 0 < mmap_threshold_mb <= _MAX_MMAP_THRESHOLD_MB:
    raise ValueError(f"mmap_threshold_mb must be in (0, {_MAX_MMAP_THRESHOLD_MB}], got {mmap_threshold_mb}")
  if top_pad_mb < 0:
    raise ValueError(f"top_pad_mb must be >= 0, got {top_pad_mb}")
  if "MALLOC_TOP_PAD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
    return False
  libc = _glibc()
  if libc is None:
    return False
  ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20) == 1
  return libc.mallopt(_M_TOP_PAD, top_pad_mb << 20) == 1 and ok


# At optimisation level 0 the floating-point parts of the initialisers (the normal and truncated
# normal transforms of the random bits) round differently from the optimised program's in the
# last bit for a few percent of entries (measured: 1,262 of 32,843 generator parameters, at most
# 3.2e-7 relative); the random bits themselves are integer arithmetic and unchanged.
_RUN_ONCE_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_init(fn: Callable, **jit_kwargs) -> Callable:
  """``jax.jit(fn, **jit_kwargs)`` for a program run once per process, such as a module's ``init``.

  On CPU it is compiled with XLA's backend optimisation level 0, several times faster to compile
  (see the module docstring); elsewhere, and when called inside another transformation
  (``jax.eval_shape``, an outer ``jit``: compiler options belong to the outermost program), it is
  plain ``jax.jit``. Every process of a multi-process run compiles it alike, so they initialise
  identical parameters.
  """
  plain = jax.jit(fn, **jit_kwargs)
  if jax.default_backend() != "cpu":
    return plain
  fast = jax.jit(fn, compiler_options=_RUN_ONCE_CPU_OPTIONS, **jit_kwargs)

  @functools.wraps(fn)
  def call(*args, **kwargs):
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((args, kwargs)))
    return (plain if traced else fast)(*args, **kwargs)

  return call
