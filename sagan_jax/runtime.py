"""``jit_init``: parameter initialisation compiled without XLA:CPU's backend optimisations.

Initialisation programs run once per process and are random-number generation (the forward pass
``init`` traces is dead code to XLA); optimising their fusions costs more than running them ever
does (compile times: `python -m bench.bench_compile_options`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

# At optimisation level 0 the floating-point parts of the initialisers (the normal and truncated
# normal transforms of the random bits) round differently from the optimised program's in the
# last bit for a few percent of entries (measured: 1,262 of 32,843 generator parameters, at most
# 3.2e-7 relative); the random bits themselves are integer arithmetic and unchanged.
_RUN_ONCE_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_init(fn: Callable, **jit_kwargs) -> Callable:
  """``jax.jit(fn, **jit_kwargs)`` for a program run once per process, such as a module's ``init``.

  On CPU it is compiled with XLA's backend optimisation level 0, several times faster to compile;
  elsewhere, and when called inside another transformation
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
