"""Test setup: 8 simulated CPU devices, so sharded code runs everywhere the tests run.

The flag must be in the environment before jax is first imported; conftest.py is imported by
pytest before any test module.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402  (after the XLA flag, which must precede any jax import)


@pytest.fixture
def tiny_sagan_config():
  """Makes a `sagan_config` for a variant at the tiny CPU scale (32×16 images, narrow networks)."""
  from sagan_jax.sagan import apply_tiny_scale, apply_variant, sagan_config

  return lambda variant="sagan": apply_tiny_scale(apply_variant(sagan_config(), variant))
