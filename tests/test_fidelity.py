"""Fidelity scores on hand-made cases: exact translators score 0, no translation scores 1."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import fidelity, geometry


def _translation(dx, dy=0.0):
  return jnp.asarray([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], jnp.float32)


def test_viewpoint_error_is_zero_for_the_truth_one_for_the_identity_and_linear_in_a_translation():
  truth = _translation(0.2)
  assert float(fidelity.viewpoint_error(truth, truth)) == pytest.approx(0.0, abs=1e-7)
  assert float(fidelity.viewpoint_error(jnp.eye(3), truth)) == pytest.approx(1.0, abs=1e-6)
  # Every corner moves by 0.2 under the truth and by 0.05 under a quarter of it: 0.15 / 0.2.
  assert float(fidelity.viewpoint_error(_translation(0.05), truth)) == pytest.approx(0.75, abs=1e-6)
  # The opposite shift lands 0.4 from the truth: worse than not warping.
  assert float(fidelity.viewpoint_error(_translation(-0.2), truth)) == pytest.approx(2.0, abs=1e-6)


def test_viewpoint_error_of_a_projective_truth_by_hand():
  # The synthetic benchmark's kind of homography: a vertical keystone.
  truth = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0], [0, -0.3, 1.0]], jnp.float32)
  corners = np.array(fidelity.CORNERS)
  w = 1 - 0.3 * corners[:, 1]  # -0.3·y + 1
  moved = corners / w[:, None]
  reference = np.mean(np.linalg.norm(moved - corners, axis=1))
  np.testing.assert_allclose(np.asarray(fidelity.map_corners(truth)), moved, rtol=1e-6)
  assert float(fidelity.viewpoint_error(jnp.eye(3), truth)) == pytest.approx(1.0, abs=1e-6)
  half = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0], [0, -0.15, 1.0]], jnp.float32)
  w_half = 1 - 0.15 * corners[:, 1]
  expected = np.mean(np.linalg.norm(corners / w_half[:, None] - moved, axis=1)) / reference
  assert float(fidelity.viewpoint_error(half, truth)) == pytest.approx(expected, rel=1e-5)
  assert 0.3 < expected < 0.7


def test_viewpoint_error_from_the_sl3_parameters_the_stm_predicts():
  # The STM predicts sl(3) parameters; exp of the log of the truth is the truth.
  p = jnp.asarray([[0.0, 0.0, 0.1, 0.0, 0.0, -0.05, 0.0, -0.2]], jnp.float32)
  truth = geometry.homography_from_params(p)[0]
  assert float(fidelity.viewpoint_error(geometry.homography_from_params(p), truth)[0]) < 1e-5
  assert float(fidelity.viewpoint_error(geometry.homography_from_params(jnp.zeros_like(p)), truth)[0]) == pytest.approx(
    1.0, abs=1e-5
  )


def test_pixel_error_is_zero_for_the_truth_one_for_the_source_and_linear_between():
  rng = np.random.default_rng(0)
  truth, source = rng.uniform(-1, 1, (2, 3, 8, 4, 3)).astype(np.float32)
  mask = (rng.uniform(size=(3, 8, 4, 1)) < 0.5).astype(np.float32)
  assert float(fidelity.pixel_error(truth, truth, source, mask)) == 0.0
  assert float(fidelity.pixel_error(source, truth, source, mask)) == pytest.approx(1.0, abs=1e-6)
  halfway = 0.5 * (truth + source)
  assert float(fidelity.pixel_error(halfway, truth, source, mask)) == pytest.approx(0.5, abs=1e-6)
  # Pixels outside the mask do not count.
  spoiled = np.where(mask > 0, truth, truth + 5.0)
  assert float(fidelity.pixel_error(spoiled, truth, source, mask)) == 0.0


def test_code_diversity_is_the_mean_pairwise_corner_distance():
  same = jnp.stack([jnp.stack([_translation(0.1)] * 3)] * 2)  # [B=2, M=3]
  assert float(fidelity.code_diversity(same)) == pytest.approx(0.0, abs=1e-7)
  spread = jnp.stack([jnp.stack([_translation(0.0), _translation(0.3), _translation(0.6)])])
  # Pairs: 0.3, 0.6, 0.3 → 0.4.
  assert float(fidelity.code_diversity(spread)) == pytest.approx(0.4, abs=1e-6)
  assert float(fidelity.code_diversity(spread[:, :1])) == 0.0


# --------------------------------------------------------------------------------------------------
# Learning, measured against the synthetic benchmark's ground truth.


def _read_split(root, domain, size):
  from PIL import Image

  from sagan_jax.data import layouts, pipeline

  folder = os.path.join(root, domain, layouts.MARKET_ROOT, "bounding_box_train")
  masks = os.path.join(root, domain, layouts.MASKS_ROOT, layouts.MARKET_ROOT, "bounding_box_train")
  out = []
  for name in sorted(os.listdir(folder)):
    example = {
      "image": np.asarray(Image.open(os.path.join(folder, name)).convert("RGB")),
      "mask": np.asarray(Image.open(os.path.join(masks, name[:-4] + ".png")))[..., None],
      "person_id": 0,
      "camera_id": 0,
    }
    out.append(pipeline.preprocess(example, size, "data", flip=False)["image"])
  return np.stack(out)


@pytest.mark.xla_optimized
def test_a_short_training_run_moves_both_fidelity_scores_below_one(tmp_path, tiny_sagan_config):
  """The default recipe at the tiny scale on a small synthetic benchmark: T_xy moves towards the true
  viewpoint and G1(S1(x)) towards the paired ground truth within 300 generator updates."""
  import jax

  from sagan_jax import cpu, parallel
  from sagan_jax.data import synthetic
  from sagan_jax.experiments import paired
  from sagan_jax.sagan import SAGAN, make_steps
  from sagan_jax.sagan.steps import create_state

  spec = synthetic.BenchmarkSpec(
    height=64, width=32, train_ids=40, test_ids=2, num_cameras=3, distractors=1, junk=1, seed=11, paired_images=64
  )
  synthetic.generate(str(tmp_path), spec)
  c = tiny_sagan_config("sagan")
  c.learning_rate = 3e-4  # configs/synthetic.py's rate for its short budget
  size = tuple(c.image_size)
  x_all, y_all = _read_split(str(tmp_path), "source", size), _read_split(str(tmp_path), "target", size)
  pairs = paired.load(str(tmp_path), size)
  model = SAGAN(c, layers=cpu.layers())  # what train.py runs on a CPU host; it makes this run-bound test faster
  mesh = parallel.make_mesh(1)
  state = create_state(model, 0, mesh)
  critic_step, generator_step = make_steps(model, mesh)
  rng = np.random.default_rng(0)

  def batch():
    x, y = x_all[rng.integers(len(x_all), size=8)], y_all[rng.integers(len(y_all), size=8)]
    return {"x": x[..., :3], "x_mask": x[..., 3:], "y": y[..., :3], "y_mask": y[..., 3:]}

  key = jax.random.key(4)
  before = paired.measure(model, state.params, pairs, key)
  for _ in range(300):
    for _ in range(c.n_critic):
      state, _ = critic_step(state, batch())
    state, _ = generator_step(state, batch())
  after = paired.measure(model, parallel.local_copy(state.params), pairs, key)
  print(
    "\nafter 300 steps: " + ", ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in after.items() if "code" not in k[-6:])
  )
  # Measured (pytest -s): pixel_error 1.000 → 0.631, viewpoint_error 1.000 → 0.351, code_diversity
  # 0.091 (every 50 steps: viewpoint 1.06, 1.09, 0.91, 0.44, 0.40, 0.35; T_xy first wanders off, as
  # on the main job). The bounds leave room for rounding changes and still need both levels to learn.
  assert before["fidelity/viewpoint_error"] == pytest.approx(1.0, abs=1e-6)  # STMs start at the identity
  assert after["fidelity/viewpoint_error"] < 0.7, after
  assert after["fidelity/pixel_error"] < 0.85, after
  assert after["fidelity/code_diversity"] > 0
