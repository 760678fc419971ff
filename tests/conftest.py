"""Test setup: 4 simulated CPU devices, so sharded code runs everywhere the tests run, and one
compilation cache for the whole session.

Four, not eight: every batch still splits over several devices, and the end-to-end tests compile and
run their SPMD programs about 12 % faster (tests/test_experiments_plan.py: 156 s against 138 s); the
two-process test's 2 × 2 devices are then the same count as one process's.

The flag must be in the environment before jax is first imported; conftest.py is imported by
pytest before any test module.

Many tests build the same tiny networks and steps afresh (new closures, so jit's in-memory cache
misses) and the multi-process test starts processes that compile them again. A persistent
compilation cache in a temporary directory, made for this session and deleted after it, lets each
identical program compile once (`python -m bench.bench_compile_options`). The variables go to the environment,
so train.py subprocesses share it, and so do pytest-xdist's workers (`-n 2`, the README's test
command): the controlling process imports this file before it starts them, and only it, which made
the directory, removes it. A cache directory the user set already is kept.

Most tests are compile-bound: they build tiny programs and run them a few times. They run with XLA's
optimisation passes mostly off (`jax_disable_most_optimizations`), which compiles about twice as
fast. The few tests that train for hundreds of steps run 1.5-3.5 times slower that way, so they carry
`@pytest.mark.xla_optimized` and get the full compiler (`python -m bench.bench_compile_options`). A
`JAX_DISABLE_MOST_OPTIMIZATIONS` set in the environment wins, for every test (1 or 0).
"""

import atexit
import os
import shutil
import tempfile

_FLAG = "--xla_force_host_platform_device_count=4"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="sagan_jax_test_xla_cache_")
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402  (after the XLA flag, which must precede any jax import)


@pytest.fixture
def tiny_sagan_config():
  """Makes a `sagan_config` for a variant at the tiny CPU scale (32×16 images, narrow networks)."""
  from sagan_jax.sagan import apply_tiny_scale, apply_variant, sagan_config

  return lambda variant="sagan": apply_tiny_scale(apply_variant(sagan_config(), variant))


# The files whose tests take longest, run first, in this order: pytest-xdist (`--dist loadfile`)
# hands whole files to its workers in collection order (once told not to sort them by test count),
# and a long file started last keeps one worker busy while the other idles. test_experiments_plan.py comes
# after test_experiments_stages.py, whose end-to-end run compiles the tiny programs both use
# (`python -m bench.bench_compile_options`).
_LONGEST_FIRST = (
  "test_experiments_stages.py",
  "test_sagan.py",
  "test_bench.py",
  "test_experiments_plan.py",
  "test_cpu.py",
  "test_experiments_paired.py",
  "test_geometry.py",
  "test_checkpoint.py",
  "test_masks.py",
  "test_reid.py",
  "test_reid_train.py",
  "test_models.py",
  "test_runtime.py",
  "test_cli.py",
  "test_data_viewpoints.py",
)


def pytest_configure(config):
  config.addinivalue_line("markers", "xla_optimized: compile this test with every XLA optimisation on")
  if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's: sort files by test count
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file is kept


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  # Before the test's fixtures, so a module fixture built for a marked test is optimised too.
  if "JAX_DISABLE_MOST_OPTIMIZATIONS" in os.environ:  # the user's choice, read by jax at import
    return
  import jax

  jax.config.update("jax_disable_most_optimizations", item.get_closest_marker("xla_optimized") is None)


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory):
  """A small synthetic benchmark (three cameras, paired ground truth): ``(folder, benchmark.json)``."""
  from sagan_jax.data import synthetic

  from helpers import TINY

  out = str(tmp_path_factory.mktemp("synthetic"))
  return out, synthetic.generate(out, TINY)


@pytest.fixture(scope="module")
def two_heights(tmp_path_factory):
  """The `helpers.TWO_HEIGHTS` benchmark: ``(folder, benchmark.json)``."""
  from sagan_jax.data import synthetic

  from helpers import TWO_HEIGHTS

  out = str(tmp_path_factory.mktemp("two_heights"))
  return out, synthetic.generate(out, TWO_HEIGHTS)
