"""The host-allocator settings (argument checks, applied on glibc, the user's environment wins) and
``jit_init``'s parameters against plain ``jax.jit``'s.

The effect is a speed figure, measured by bench/bench_warp.py (``--host_allocator tuned|default``).
Minor page faults per step (``resource.getrusage``) were tried as a timing-free trace of it and
vary too much between process starts to assert on: some tuned starts fault as often as the default.
"""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import runtime

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _applied_in_fresh_process(**env) -> str:
  """What configure_host_allocator returns in a new process (malloc starts from its defaults)."""
  environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  environ.update(PYTHONPATH=_ROOT, **env)
  code = "from sagan_jax import runtime; print(runtime.configure_host_allocator())"
  return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True).stdout.strip()


def test_arguments_are_checked():
  with pytest.raises(ValueError, match="mmap_threshold_mb"):
    runtime.configure_host_allocator(mmap_threshold_mb=64)  # glibc's maximum is 32 MiB
  with pytest.raises(ValueError, match="top_pad_mb"):
    runtime.configure_host_allocator(top_pad_mb=-1)


@pytest.mark.skipif(runtime._glibc() is None, reason="mallopt is glibc's; elsewhere the function is a no-op")
def test_settings_apply_on_glibc_and_leave_the_users_environment_alone():
  assert _applied_in_fresh_process() == "True"
  assert _applied_in_fresh_process(MALLOC_TOP_PAD_=str(1 << 20)) == "False"
  assert _applied_in_fresh_process(MALLOC_MMAP_THRESHOLD_=str(1 << 20)) == "False"


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
