"""The host-allocator settings: argument checks, applied on glibc, the user's environment wins.

The effect is a speed figure, measured by bench/bench_warp.py (``--host_allocator tuned|default``).
Minor page faults per step (``resource.getrusage``) were tried as a timing-free trace of it and
vary too much between process starts to assert on: some tuned starts fault as often as the default.
"""

import os
import subprocess
import sys

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
