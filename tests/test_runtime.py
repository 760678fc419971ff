"""sagan_jax.cpu's host-allocator settings (argument checks, applied on glibc, the user's environment wins, and
the page faults they exist to remove) and ``jit_init``'s parameters against plain ``jax.jit``'s.

The speed they buy is measured by the benchmarks (``--host_allocator tuned|default``); here the
mechanism is checked instead: minor page faults per call of a program whose temporaries are larger
than a thread arena's heap, in fresh processes.
"""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import cpu, runtime

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fresh_process(code: str, **env) -> str:
  """Runs code in a new Python (malloc starts from its defaults), without the user's malloc variables."""
  environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
  environ.update(PYTHONPATH=_ROOT, **env)
  return subprocess.run(
    [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
  ).stdout.strip()


def _applied_in_fresh_process(**env) -> str:
  """configure_host_allocator's result, and whether JAX's CPU dispatch is asynchronous after it."""
  code = (
    "import jax; from sagan_jax import cpu; applied = cpu.configure_host_allocator(); "
    "print(applied, jax.config.read('jax_cpu_enable_async_dispatch'))"
  )
  return _fresh_process(code, **env)


def test_arguments_are_checked():
  with pytest.raises(ValueError, match="top_pad_mb"):
    cpu.configure_host_allocator(top_pad_mb=-1)


@pytest.mark.skipif(cpu._glibc() is None, reason="mallopt is glibc's; elsewhere the function is a no-op")
def test_settings_apply_on_glibc_and_leave_the_users_environment_alone():
  assert _applied_in_fresh_process() == "True False"
  for variable in cpu._USER_MALLOC_VARIABLES:  # then nothing changes, dispatch included
    assert _applied_in_fresh_process(**{variable: str(1 << 20)}) == "False True", variable
  assert _applied_in_fresh_process(GLIBC_TUNABLES="glibc.malloc.hugetlb=1") == "False True"
  assert _applied_in_fresh_process(GLIBC_TUNABLES="glibc.rtld.nns=4") == "True False"  # not malloc's
  # Only on CPU hosts, and never with --nocpu_fast_path (setup(enabled=False)).
  assert _applied_in_fresh_process(JAX_PLATFORMS="cuda") == "False True"
  off = (
    "import jax; from sagan_jax import cpu; cpu.setup(enabled=False); "
    "print(jax.config.read('jax_cpu_enable_async_dispatch'))"
  )
  assert _fresh_process(off, JAX_PLATFORMS="cpu") == "True"


# Batch norm and a ReLU, forward and backward, on a [16, 64, 32, 256] float32 array: XLA:CPU keeps
# its intermediates in one temporary block of 64 MiB, allocated and freed by every call, larger
# than a thread arena's heap and than glibc's largest mmap threshold.
_FAULTS_PER_CALL = """
import json, resource, sys
from sagan_jax import cpu, runtime
# A pad smaller than the block, so the block cannot simply come out of the pad of an earlier growth.
tuned = sys.argv[1] == "tuned" and cpu.configure_host_allocator(top_pad_mb=16)
import jax, jax.numpy as jnp
def bn_relu(x):
  m = x.mean((0, 1, 2)); v = ((x - m) ** 2).mean((0, 1, 2))
  return jax.nn.relu((x - m) * jax.lax.rsqrt(v + 1e-5))
step = jax.jit(lambda x: jax.grad(lambda x: bn_relu(x).sum())(x))
x = jnp.linspace(-1, 1, 16 * 64 * 32 * 256, dtype=jnp.float32).reshape(16, 64, 32, 256)
temp = step.lower(x).compile().memory_analysis().temp_size_in_bytes
faults = []
for _ in range(15):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(step(x))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tuned": bool(tuned), "temp_pages": temp / 4096, "faults": faults[3:]}))
"""


def _transparent_huge_pages_always() -> bool:
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      return "[always]" in f.read()
  except OSError:
    return False


@pytest.mark.skipif(cpu._glibc() is None, reason="mallopt is glibc's; elsewhere the function is a no-op")
def test_tuned_allocator_keeps_a_steps_temporaries_mapped():
  tuned, default = (
    json.loads(_fresh_process(_FAULTS_PER_CALL.replace("sys.argv[1]", repr(mode)))) for mode in ("tuned", "default")
  )
  assert tuned["tuned"] and not default["tuned"]
  assert tuned["temp_pages"] * 4096 >= 64 << 20
  # glibc's defaults map the temporaries (and the 32 MiB output) afresh on every call: a fault per
  # page, 1.5 pages per page of temporaries. With the settings, a call after the first few faults
  # nothing in, except now and then when a small allocation has landed in the freed block and the
  # heap grows by one more block, hence the median. Each of the three settings alone, left out,
  # fails the second assertion.
  if not _transparent_huge_pages_always():  # else a fresh mapping faults once per 2 MiB page
    assert np.median(default["faults"]) > 1.2 * default["temp_pages"], default
  assert np.median(tuned["faults"]) < 0.01 * tuned["temp_pages"], tuned


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(16, (3, 3))(x))  # lecun normal: a truncated normal transform of random bits
    x = nn.Dense(8, kernel_init=nn.initializers.uniform(2.0), bias_init=nn.initializers.normal(1.0))(x.mean((1, 2)))
    return nn.LayerNorm()(x)


def test_jit_init_gives_jits_parameters_up_to_last_bit_rounding():
  key, x = jax.random.PRNGKey(7), jnp.zeros((1, 12, 8, 4))
  ours = runtime.jit_init(_Net().init)(key, x)
  ref = jax.jit(_Net().init)(key, x)
  assert jax.tree.structure(ours) == jax.tree.structure(ref)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Inside another transformation it is the plain jit (compiler options are the outer program's).
  shapes = jax.eval_shape(runtime.jit_init(_Net().init), key, x)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), shapes) == jax.tree.map(lambda a: (a.shape, a.dtype), ref)
  traced = jax.jit(lambda k: runtime.jit_init(_Net().init)(k, x))(key)
  for a, b in zip(jax.tree.leaves(traced), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  params = ref["params"]
  # The draws are the initialisers' (not, say, zeros from a dead program): spot-check their scale.
  # lecun normal: std 1/sqrt(fan_in = 3·3·4) = 1/6 after truncation at ±2σ of a normal whose σ is
  # 1/6 divided by the truncated unit normal's std, 0.8796.
  conv = np.asarray(params["Conv_0"]["kernel"])
  assert 0.9 / 6 < conv.std() < 1.1 / 6 and np.abs(conv).max() <= 2 / 6 / 0.87962566 * 1.0001
  assert np.all((np.asarray(params["Dense_0"]["kernel"]) >= 0) & (np.asarray(params["Dense_0"]["kernel"]) < 2.0))
