"""Process-level settings for the host (CPU) side of a run.

XLA's CPU runtime allocates the buffers of every step when the step starts and frees them when it
ends: the step's temporaries as one block (762 MB for the IDE ResNet-50 step at batch 8, 256×128)
and its outputs one by one. With glibc's default malloc settings every block above the mmap
threshold (at most 32 MiB) is mapped with ``mmap`` and unmapped on ``free``, so every step pays
for fresh page faults on all of that memory (the kernel zeroes each page on first touch) and for
``munmap`` calls and TLB shoot-downs across XLA's threads. The same happens to any large block
that one of XLA's worker threads allocates, whatever the settings, because a thread's malloc arena
grows in heaps of at most 64 MiB and maps anything larger; by default XLA runs a CPU program on such
a thread (asynchronous dispatch). Measured on a 2-core CPU, the IDE step at batch 8 took 195,000
minor page faults and 0.36 s of system time per step (BENCHMARKS.md §3: 1.10 s a step with glibc's
defaults, 0.97 s with the settings below, which leave it no page faults at all).

`configure_host_allocator` therefore does two things:

* glibc: ``mmap`` allocation off (``M_MMAP_MAX`` 0), the top of the heap never returned to the
  system (``M_TRIM_THRESHOLD`` -1), and the heap grown in steps of ``top_pad_mb``
  (``M_TOP_PAD``). After the first steps the heap holds the largest step's buffers and every later
  step reuses them without a page fault;
* JAX: CPU programs run on the thread that calls them (``jax_cpu_enable_async_dispatch`` off),
  so that their buffers come from that heap. A single-device CPU step then no longer overlaps with
  the Python that follows it, which costs nothing measurable here: the host does both anyway.

It is called by ``train.py``, ``evaluate.py``, the mask CLI and the benchmarks, which own their
processes; the library never calls it on import, because malloc settings belong to the whole
process. Costs: the process's resident memory stays at its peak for the rest of its life (memory
freed inside the heap is reused, never given back), and it can rise above that when a small
allocation lands in a freed step's block and the next step's block has to go after it. Blocks that
other threads allocate are still mapped afresh (at batch 128 the IDE step keeps 194,000 faults a
step, 3 % of its time). Accelerator programs run as before.

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
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
# The variables through which a user sets malloc up before start-up; any of them wins.
_USER_MALLOC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_")


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


def _user_sets_malloc() -> bool:
  return (any(name in os.environ for name in _USER_MALLOC_VARIABLES)
          or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


# Set to 0 to keep glibc's and JAX's defaults on a CPU host too.
OPT_OUT_VARIABLE = "SAGAN_JAX_HOST_ALLOCATOR"
# JAX's accelerator plugins: with one installed (and JAX_PLATFORMS not limited to cpu) the host is
# an accelerator host, where these settings were never measured and are not applied.
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


def _accelerator_host() -> bool:
  """Whether JAX will run on an accelerator, decided without starting a backend (which would be too late)."""
  import importlib.util  # noqa: PLC0415

  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
  return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_PLUGINS)


def configure_host_allocator(top_pad_mb: int = 256) -> bool:
  """Keeps the memory of XLA's CPU steps mapped from one step to the next (glibc only); returns whether it applied.

  Sets glibc's ``M_MMAP_MAX`` to 0, ``M_TRIM_THRESHOLD`` to -1 (no trimming) and ``M_TOP_PAD``, and
  turns JAX's asynchronous CPU dispatch off (see the module docstring). All three are needed: with
  ``mmap`` allowed, a block above 32 MiB that the heap's free space cannot hold is mapped afresh on
  every step; with trimming, the freed block at the top of the heap is given back and faulted in
  again; with asynchronous dispatch, the block is allocated by a worker thread, whose arena maps it
  whatever the settings. Call it first
  thing, before the first computation: JAX reads the dispatch setting when it creates its CPU
  client. Environment variables for malloc that the user sets (``MALLOC_MMAP_MAX_``,
  ``MALLOC_TOP_PAD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, or ``glibc.malloc``
  tunables in ``GLIBC_TUNABLES``) win: glibc applies them at start-up, and this function then
  changes nothing, dispatch included.

  Args:
    top_pad_mb: how much more memory than asked for the heap takes from the system each time it
      grows, MiB.

  Returns:
    True when the settings were applied; False on a C library without ``mallopt``, when the
    user's environment sets malloc up, on an accelerator host (a JAX accelerator plugin installed,
    or ``JAX_PLATFORMS`` naming one), or with ``SAGAN_JAX_HOST_ALLOCATOR=0``.
  """
  if top_pad_mb < 0:
    raise ValueError(f"top_pad_mb must be >= 0, got {top_pad_mb}")
  if os.environ.get(OPT_OUT_VARIABLE, "1") == "0" or _user_sets_malloc() or _accelerator_host():
    return False
  libc = _glibc()
  if libc is None:
    return False
  settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1), (_M_TOP_PAD, top_pad_mb << 20))
  applied = all([libc.mallopt(param, value) == 1 for param, value in settings])  # noqa: C419  (set every one)
  if applied:
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  return applied


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
