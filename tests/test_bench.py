"""Every benchmark script runs at its smallest size and prints its table, so none can rot unnoticed.

Figures are not checked here (they are machine figures, in BENCHMARKS.md); each script must run from
the repository root as ``python -m bench.NAME`` and print a Markdown table.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from sagan_jax.data import synthetic

from helpers import ROOT, tiny_config

SMALLEST = {
  "bench_warp": ["--batch=1", "--height=16", "--width=8", "--repeats=2"],
  "bench_evaluation": ["--queries=20", "--gallery=60", "--dim=8", "--repeats=1", "--backend=numpy,jax"],
  "bench_ide_step": [
    "--batches=2",
    "--dtypes=float32",
    "--steps=1",
    "--classes=4",
    "--height=32",
    "--width=16",
    "--stage_sizes=1,1,1,1",
    "--resnet_width=4",
    "--layers=flax,cpu",
  ],
  "bench_convs": ["--net=sagan_synthetic", "--batch=1", "--height=16", "--width=8", "--repeats=1", "--impl=both"],
  "bench_pipeline": ["--height=32", "--width=16", "--ids=3", "--batch=4", "--batches=2", "--threads=1", "--sizes=16x8"],
  "bench_compile_options": ["--batch=1", "--height=16", "--width=8", "--calls=1", "--options=default"],
  "bench_checkpoint": ["--scale=synthetic", "--devices=2", "--saves=2", "--restores=1"],
}


def _run(module: str, *args: str, env_extra=None) -> str:
  # One device, compiled with most optimisations off: these runs check that a script works, not its speed.
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  env.update(env_extra or {})
  out = subprocess.run(
    [sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
  )
  assert out.returncode == 0, f"{module}: {out.stderr[-3000:]}"
  assert any(line.startswith("|") for line in out.stdout.splitlines()), f"{module} printed no table:\n{out.stdout}"
  return out.stdout


@pytest.mark.parametrize("module", sorted(SMALLEST))
def test_benchmark_runs_at_its_smallest_size(module):
  _run(module, *SMALLEST[module])


def test_sagan_step_and_its_trace_summary(tmp_path):
  trace = tmp_path / "sagan.json.gz"
  _run("bench_sagan_step", "--scale=cpu", "--batch=2", "--iterations=1", "--layers=auto", f"--trace={trace}")
  assert trace.is_file()
  assert "| operation" in _run("trace_summary", str(trace), "--top=3")


def test_scaling_over_two_simulated_devices():
  two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  _run("bench_scaling", "--devices=1,2", "--steps=ide", "--repeats=1", env_extra=two)


def test_fidelity_and_report_references_and_translation_gradients_on_a_tiny_benchmark(tmp_path):
  spec = synthetic.BenchmarkSpec(
    height=32,
    width=16,
    train_ids=4,
    test_ids=2,
    num_cameras=2,
    target_views=2,
    distractors=1,
    junk=1,
    seed=1,
    paired_images=8,
    heldout_paired_images=4,
  )
  synthetic.generate(str(tmp_path / "bench"), spec)
  table = _run("fidelity_references", f"--benchmark={tmp_path / 'bench'}", "--height=32", "--width=16")
  assert "| heldout (4) | x itself | 1.000 | 1.000 | 1.000 | – |" in table and "| train (" in table
  # Only the person counts: the truth's person on another scene is exact, as the unweighted windows were not.
  grey = next(line for line in table.splitlines() if "| heldout (4) | the truth's person on grey" in line)
  assert grey.split("|")[3:5] == [" 0.000 ", " 0.000 "] and float(grey.split("|")[5]) > 0
  config = tiny_config(tmp_path / "bench")
  overrides = [f"--config.data.synthetic_spec.{k}={v}" for k, v in spec.__dict__.items()]
  _run(
    "translation_gradients",
    f"--config={os.path.join(ROOT, 'tests', 'tiny_config.py')}",
    f"--config.data.synthetic_dir={config.data.synthetic_dir}",
    *overrides,
    f"--workdir={tmp_path / 'never_trained'}",
    "--batches=1",
  )
  references = _run(
    "report_references",
    f"--config={os.path.join(ROOT, 'tests', 'tiny_config.py')}",
    f"--config.data.synthetic_dir={config.data.synthetic_dir}",
    *overrides,
  )
  assert "| the untranslated source |" in references and "| 1.000 |" in references
  assert references.count("| the true translation, target view") == spec.target_views


def test_model_flops_counts_convolutions_products_and_scans_by_hand():
  import jax
  import jax.numpy as jnp

  from bench import _common

  x, w = jnp.ones((2, 8, 6, 3)), jnp.ones((3, 3, 3, 5))

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (2, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

  # Output 2×4×6×5, each a 3×3×3 window: 2 FLOPs per multiply-add, padding taps included.
  assert _common.model_flops(conv, x, w) == 2 * (2 * 4 * 6 * 5) * (3 * 3 * 3)
  # The two gradients are each as large as the forward convolution (the input gradient's dilation zeros
  # are not work).
  grads = jax.grad(lambda x, w: conv(x, w).sum(), (0, 1))
  assert _common.model_flops(grads, x, w) == 3 * 2 * (2 * 4 * 6 * 5) * (3 * 3 * 3)
  a, b = jnp.ones((4, 7)), jnp.ones((7, 3))
  assert _common.model_flops(jax.jit(lambda a, b: a @ b), a, b) == 2 * 4 * 7 * 3
  body = lambda c, _: (c, a @ b)
  assert _common.model_flops(lambda a, b: jax.lax.scan(body, 0.0, None, length=5)[1], a, b) == 5 * 168
  # One branch of a cond runs: the larger is counted.
  assert _common.model_flops(lambda p: jax.lax.cond(p, lambda: a @ b, lambda: jnp.zeros((4, 3))), True) == 168


def test_flop_counts_of_the_paper_scale_steps_need_no_compiling():
  """The counts BENCHMARKS' H200 MFU divides by, reproducible on any machine."""
  sagan = _run("bench_sagan_step", "--scale=paper", "--batch=64", "--dtype=bfloat16", "--count_only")
  critic, generator = (float(v) for v in sagan.strip().splitlines()[-1].strip("| ").split(" | "))
  assert 11_000 < critic < 11_500 and 40_500 < generator < 41_000  # GFLOP per update
  ide_step = _run("bench_ide_step", "--batches=128", "--count_only")
  assert 2_000 < float(ide_step.strip().splitlines()[-1].split("|")[2]) < 2_060


def test_identity_decomposition_helpers_by_hand():
  """`bench/identity_decomposition.py`'s pieces: the colour fit recovers an affine map exactly where
  it is weighted, the spectral share sorts a smooth change from a checkerboard, the cross-camera
  rank-1 searches only the other cameras."""
  import numpy as np

  from bench import identity_decomposition as d

  rng = np.random.default_rng(0)
  source = rng.uniform(-0.5, 0.5, (2, 6, 4, 3))
  matrix, offset = np.array([[0.8, 0.1, 0.0], [0.0, 0.9, 0.2], [0.1, 0.0, 0.7]]), np.array([0.05, -0.1, 0.02])
  target = source @ matrix + offset
  weight = np.zeros((2, 6, 4))
  weight[0, :3] = 1.0  # image 0: fitted on its top half; image 1: no weight, left as it is
  fitted = d.colour_fit(source, target, weight)
  np.testing.assert_allclose(fitted[0], target[0], atol=1e-9)  # an affine map holds on the whole image
  np.testing.assert_array_equal(fitted[1], source[1])
  y, x = np.mgrid[:8, :8]
  smooth = np.cos(2 * np.pi * y / 8)[None, ..., None]  # the lowest frequency: 1/4 of Nyquist
  board = ((y + x) % 2 * 2.0 - 1.0)[None, ..., None]
  assert d.low_frequency_share(smooth) == pytest.approx(1.0)
  assert d.low_frequency_share(board) == pytest.approx(0.0, abs=1e-12)
  # Every query's person has an image in the other camera (5 answerable); one finds it first.
  features = np.array([[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
  pids, cameras = np.array([1, 1, 2, 2, 1]), np.array([0, 0, 0, 1, 1])
  # Camera 0's queries search rows 3–4: row 0 → row 3 (pid 2, miss), row 1 → row 3 (miss), row 2 → 3 (hit);
  # camera 1's search rows 0–2: row 3 → row 0 (pid 1, miss), row 4 → row 2 (pid 2, miss).
  assert d.cross_camera_rank1(features, features, pids, cameras) == pytest.approx(1 / 5)
  # Blends: the ends exactly, halfway the mean; with a region, the end outside it.
  start, end = rng.uniform(-1, 1, (2, 4, 3, 3)), rng.uniform(-1, 1, (2, 4, 3, 3))
  np.testing.assert_array_equal(d.blend(start, end, 0.0), start)
  np.testing.assert_array_equal(d.blend(start, end, 1.0), end)
  np.testing.assert_allclose(d.blend(start, end, 0.5), (start + end) / 2)
  region = np.zeros((2, 4, 3, 1))
  region[:, :2] = 1.0
  half = d.blend(start, end, 0.25, region)
  np.testing.assert_allclose(half[:, :2], 0.75 * start[:, :2] + 0.25 * end[:, :2])
  np.testing.assert_array_equal(half[:, 2:], end[:, 2:])
  # Both targets along the change, linear between levels. Gap/raw 0.9 − 0.2α is ≤ 0.8 from α 0.5 and
  # kept 1 − 0.4α ≥ 0.9 up to 0.25: no window; the shortfalls 0.1 − 0.2α and 0.4α − 0.1 meet at 1/3.
  found = d.targets_along([0.0, 1.0], [0.9, 0.7], [1.0, 0.6])
  assert found["window"] is None and found["balance"] == pytest.approx(1 / 3, abs=1e-3)
  # Gap/raw 0.9 − 0.3α (≤ 0.8 from 1/3), kept 1 − 0.1α (≥ 0.9 throughout), levels unsorted: the window
  # is [1/3, 1]; the shortfalls 0.1 − 0.3α and 0.1α − 0.1 meet at 0.5.
  found = d.targets_along([1.0, 0.0, 0.5], [0.6, 0.9, 0.75], [0.9, 1.0, 0.95])
  assert found["window"] == pytest.approx((1 / 3, 1.0), abs=1e-3) and found["balance"] == pytest.approx(0.5, abs=1e-3)
  assert d.targets_along([0.0, 1.0], [0.95, 0.9], [0.7, 0.6])["balance"] is None  # short of both everywhere
  assert d.parse_alphas(["0", "0.5", "1"]) == [0.0, 0.5, 1.0]
  for bad in (["x"], ["1.5"], ["-0.1", "0.5"]):
    with pytest.raises(Exception, match=r"--alphas=.*: give numbers in \[0, 1\], comma-separated"):
      d.parse_alphas(bad)
  # Person colours: a change that keeps each person's colour up to one brightening keeps the
  # correlation at 1 and moves the brightness by its shift; an image without a person is left out.
  before = rng.uniform(-0.6, 0.2, (5, 4, 3, 3))
  person = np.zeros((5, 4, 3))
  person[:4, 1:3] = 1.0
  logits = np.arctanh(before)
  colours = d.person_colours(before, np.tanh(logits + 0.3), person)
  np.testing.assert_allclose(colours["brightness_after"][0] - colours["brightness_before"][0], 0.3, atol=1e-9)
  np.testing.assert_allclose(colours["brightness_after"][1], colours["brightness_before"][1], atol=1e-9)
  per_image = [logits[i][person[i] > 0.5].mean() for i in range(4)]
  assert colours["brightness_before"] == pytest.approx((np.mean(per_image), np.std(per_image)))
  assert min(colours["colour_correlation"]) > 0.99
  # Each person's colours handed to another person: the order is lost.
  swapped = d.person_colours(before, before[[1, 2, 3, 0, 4]], person)
  assert max(swapped["colour_correlation"]) < 0.99


def test_critic_overfit_scores_each_image_as_its_camera_under_camera_critics(tiny_sagan_config, monkeypatch):
  """`bench/critic_overfit.py`'s pieces (`experiments.critic_overfit`) with a camera-conditioned D1
  (which judge refuses without cameras): a real image scores its own camera's output of the K-output
  critic, source image i is translated with code i mod K and scored as that camera (a brute force
  image by image), and the ratio r and the standard-error gap by hand. Batches of 2 over 5 images:
  the padded last batch scores as the others, and one program serves every batch and set size."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from sagan_jax.experiments import critic_overfit as co
  from sagan_jax.sagan import SAGAN
  from sagan_jax.sagan.model import XY

  c = tiny_sagan_config("sagan")
  c.siamese, c.camera_critics, c.code_distribution, c.z_dim = False, True, "categorical", 3
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  h, w = c.image_size
  rng = np.random.default_rng(0)
  images = np.concatenate([rng.uniform(-1, 1, (5, h, w, 3)), rng.uniform(0, 1, (5, h, w, 1)) > 0.5], -1)
  images = images.astype(np.float32)
  cameras = np.array([2, 0, 1, 1, 0], np.int32)
  outputs = np.asarray(model.critics["D1"].apply({"params": params["D1"]}, jnp.asarray(images))).mean(axis=(1, 2))
  assert outputs.shape == (5, 3)
  monkeypatch.setattr(co, "_BATCH", 2)
  own = outputs[np.arange(5), cameras]
  np.testing.assert_allclose(co.real_scores(model, params, images, cameras), own, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(co.real_scores(model, params, images[:3], cameras[:3]), own[:3], rtol=1e-5, atol=1e-6)
  assert co._judge_real._cache_size() == 1
  fakes = co.fake_scores(model, params, images, jax.random.key(0))
  assert co._judge_fake._cache_size() == 1
  for i in range(5):
    z = jax.nn.one_hot(jnp.array([i % 3]), 3) * np.sqrt(3.0)
    out = model.adapt(params, XY, images[i : i + 1, ..., :3], images[i : i + 1, ..., 3:], z)
    one = model.judge(params, "D1", out.adapted, out.mask, jnp.array([i % 3]))
    np.testing.assert_allclose(fakes[i], float(one[0]), rtol=1e-4, atol=1e-5)
  # r = (3 − 2) / (3 − 1) = 0.5; gap 1 over √(1/2 + 1/2) standard errors (each set's variance is 1).
  r, z = co.overfit_ratio(np.array([2.0, 4.0]), np.array([1.0, 3.0]), np.array([1.0, 1.0]))
  assert (r, z) == (pytest.approx(0.5), pytest.approx(1.0))


def test_compile_profile_times_each_backend_compile_under_its_program_name():
  from jax._src import compiler

  from bench import compile_profile

  original = compiler.backend_compile_and_load

  def tripled_plus_seven(x):
    return x * 3 + 7

  f = jax.jit(tripled_plus_seven)
  with compile_profile.recording() as stats:
    f(jnp.ones(13))
    f(jnp.ones(13))  # jit's own cache: no second compile
    f(jnp.ones(17))  # a new shape: one more
  assert compiler.backend_compile_and_load is original  # put back on leaving
  assert stats["jit_tripled_plus_seven"][0] == 2 and stats["jit_tripled_plus_seven"][1] > 0
  total = sum(c for c, _ in stats.values())
  lines = compile_profile.table(stats, top=1).splitlines()
  assert lines[0].startswith(f"{total} compiles") and len(lines) == 4  # totals, header, rule, one row


def test_code_spread_names_the_view_range_nearest_the_codes_spread():
  # In its own interpreter: the bench defines absl flags (--workdir) that other benches imported here define too.
  check = """
from bench import code_spread
row = {"code spread": 0.036, "view (±0.06)": 0.032, "view (±0.07)": 0.036, "view (±0.08)": 0.040}
assert code_spread.nearest_range(row, (0.08, 0.06, 0.07)) == 0.07
tie = {"code spread": 0.03, "view (±0.02)": 0.02, "view (±0.04)": 0.04}
assert code_spread.nearest_range(tie, (0.04, 0.02)) == 0.02  # equally near: the smaller
assert code_spread.nearest_range({**tie, "code spread": float("nan")}, (0.02, 0.04)) is None  # M = 1: no codes
print("ok")
"""
  out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=False)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_code_spread_reads_a_hand_made_translated_set(tmp_path):
  """`bench/code_spread.py` on two people × two flat images × three codes, code k brighter by 10k
  levels and the second person by 50: the spread, the people's distance and the views are by hand."""
  import numpy as np

  from sagan_jax.experiments import translation

  root = tmp_path / "translated"
  names, pids = [], []
  for index, (pid, level) in enumerate([(1, 100), (1, 100), (2, 150), (2, 150)]):
    for code in range(3):
      name = translation.image_name(index, code)
      rgb = np.full((8, 4, 3), (level + 10 * code) / 127.5 - 1)
      translation.write_image(str(root), name, rgb, np.ones((8, 4, 1)))
      names.append(name)
      pids.append(pid)
  translation.write_labels(str(root), names, pids, [0] * len(names), {"num_codes": 3})
  command = [
    sys.executable,
    "-m",
    "bench.code_spread",
    f"--workdir={tmp_path}",
    "--images=4",
    "--view_ranges=0.02,0.06",
  ]
  out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
  header = next(line for line in out.splitlines() if line.startswith("| translated set |"))
  assert [c.strip() for c in header.strip("|").split("|")][5:8] == [
    "view (±0.02)",
    "view (±0.06)",
    "camera's view alone (±0.08)",
  ]
  row = next(line for line in out.splitlines() if line.startswith("| translated |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[1:3] == ["3", "4"]
  assert float(cells[3]) == pytest.approx(15 / 255, abs=6e-4)  # codes 1 and 2: 10 and 20 levels
  assert float(cells[4]) == pytest.approx(50 / 255, abs=6e-4)
  assert float(cells[5]) == float(cells[6]) == float(cells[7]) == 0.0  # a flat image under any view, border-padded
  assert float(cells[8]) > 0.005  # the camera augment recolours it
  # Flat images: every view figure is 0, so the nearest range to the spread is the smallest (a tie).
  assert "The view range nearest the code spread: translated ±0.02." in out
  # Two workdirs (a copy of the set as the second): one row each, named by its workdir, and their mean.
  import shutil

  shutil.copytree(root, tmp_path / "b" / "translated")
  two = subprocess.run(
    [*command[:3], f"--workdir={tmp_path},{tmp_path / 'b'}", *command[4:]],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  rows = {line.split("|")[1].strip(): line for line in two.splitlines() if line.startswith("| ")}
  assert {f"{tmp_path}/translated", f"{tmp_path}/b/translated", "mean"} <= set(rows)
  assert [c.strip() for c in rows["mean"].strip("|").split("|")][3] == cells[3]  # the mean of two equal spreads
  assert "; mean ±0.02." in two
  bad = subprocess.run(
    [*command[:-1], "--view_ranges=0.02,wide"], check=False, cwd=ROOT, capture_output=True, text=True
  )
  assert bad.returncode == 2 and "--view_ranges=0.02,wide: give ranges in (0, 0.5]" in bad.stderr
  empty = subprocess.run(
    [*command[:3], f"--workdir={tmp_path / 'none'}"], check=False, cwd=ROOT, capture_output=True, text=True
  )
  assert empty.returncode == 2 and "no complete translated set under" in empty.stderr
