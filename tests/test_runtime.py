"""The host-allocator settings: argument checks, the user's environment wins, and the effect."""

import os
import subprocess
import sys

import pytest

from sagan_jax import runtime

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Minor page faults per jitted warp forward+backward step (image-sized 4 MiB buffers), in a fresh
# process so the allocator starts from glibc's defaults.
_FAULTS = """
import resource, sys
import jax, jax.numpy as jnp
from sagan_jax import geometry, runtime
print(runtime.configure_host_allocator() if sys.argv[1] == "tuned" else "default")
images = jnp.ones((8, 256, 128, 4))
params = jnp.full((8, 8), 0.05)
loss = lambda i, p: jnp.sum(jnp.square(geometry.warp(i, geometry.homography_from_params(p))))
step = jax.jit(jax.grad(loss, argnums=(0, 1)))
for _ in range(3):
  jax.block_until_ready(step(images, params))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  jax.block_until_ready(step(images, params))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_step(mode: str, **env) -> tuple[str, float]:
  environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  environ.update(PYTHONPATH=_ROOT, XLA_FLAGS="", JAX_PLATFORMS="cpu", **env)
  out = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=environ, capture_output=True, text=True, check=True)
  applied, faults = out.stdout.split()
  return applied, float(faults)


def test_arguments_are_checked():
  with pytest.raises(ValueError, match="mmap_threshold_mb"):
    runtime.configure_host_allocator(mmap_threshold_mb=64)  # glibc's maximum is 32 MiB
  with pytest.raises(ValueError, match="top_pad_mb"):
    runtime.configure_host_allocator(top_pad_mb=-1)


@pytest.mark.skipif(runtime._glibc() is None, reason="mallopt is glibc's; elsewhere the function is a no-op")
def test_tuned_allocator_keeps_freed_memory_mapped_between_steps():
  # One malloc arena, so the count does not depend on which of XLA's threads frees what. Measured
  # on the development machine: ~1,100 faults per step tuned against ~10,500 by default (a step
  # touches ~8,000 pages). The time per step halves (bench/bench_warp.py); faults are its
  # deterministic trace.
  applied, tuned = _faults_per_step("tuned", MALLOC_ARENA_MAX="1")
  _, default = _faults_per_step("default", MALLOC_ARENA_MAX="1")
  assert applied == "True"
  assert tuned < 0.25 * default, (tuned, default)
  # A user's own MALLOC_* environment is left alone.
  applied, _ = _faults_per_step("tuned", MALLOC_TOP_PAD_=str(1 << 20))
  assert applied == "False"
