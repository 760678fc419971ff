"""SA-GAN assembled: variants, loss invariants, the sharded steps, translation, and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sagan_jax import cpu, geometry, parallel
from sagan_jax.errors import ConfigError
from sagan_jax.sagan import SAGAN, apply_variant, make_steps, sagan_config, translate
from sagan_jax.sagan.model import CYCLE_CODE_STREAM, XY, YX
from sagan_jax.sagan.steps import create_state
from sagan_jax.sagan.train import camera_indices, optimizers

from helpers import toy_people

H, W = 32, 16


def _tx(model):
  """The configured optimisers of ``model`` (a constant rate: no run length needed)."""
  return optimizers(model.config, 0)


def _batch(key, n, target_fn):
  kx, ky = jax.random.split(key)
  x, x_mask = toy_people(kx, n)
  y, y_mask = target_fn(ky, n)
  return {"x": x, "x_mask": x_mask, "y": y, "y_mask": y_mask}


def _set_stm_output(params, name, p):
  """Makes an STM predict ``p`` for every input: zero kernel, bias p on its output layer."""
  out_layer = sorted(k for k in params[name] if k.startswith("Dense"))[-1]
  layer = params[name][out_layer]
  new = {**params[name], out_layer: {"kernel": jnp.zeros_like(layer["kernel"]), "bias": jnp.asarray(p, jnp.float32)}}
  return {**params, name: new}


# --------------------------------------------------------------------------------------------------
# Configurations.


@pytest.mark.parametrize(
  "variant,networks",
  [
    ("sagan", {"G1", "G2", "S1", "S2", "D1", "D2", "DT1", "DT2", "SiaNet"}),
    ("ws", {"G1", "G2", "D1", "D2", "SiaNet"}),
    ("wp", {"S1", "S2", "D1", "D2", "DT1", "DT2", "SiaNet"}),
    ("wd", {"G1", "G2", "S1", "S2", "D1", "D2", "DT1", "DT2", "SiaNet"}),
    ("cyclegan", {"G1", "G2", "D1", "D2"}),
    ("cyclegan_star", {"G1", "G2", "D1", "D2"}),
  ],
)
def test_each_variant_has_the_networks_it_should(tiny_sagan_config, variant, networks):
  model = SAGAN(tiny_sagan_config(variant))
  assert set(jax.eval_shape(model.init_params, jax.random.PRNGKey(0))) == networks


def test_bad_configuration_values_raise(tiny_sagan_config):
  c = tiny_sagan_config()
  c.identity_loss = "pixels"
  with pytest.raises(ValueError, match="identity_loss"):
    SAGAN(c)
  c = tiny_sagan_config()
  c.spatial, c.pixel = False, False
  with pytest.raises(ValueError, match="nothing would adapt"):
    SAGAN(c)
  with pytest.raises(ValueError, match="unknown variant 'cycle'"):
    tiny_sagan_config("cycle")
  with pytest.raises(ValueError, match="trains no GAN"):
    tiny_sagan_config("original")
  c = tiny_sagan_config()
  c.critic_mask = "rounded"
  with pytest.raises(ValueError, match="critic_mask"):
    SAGAN(c)


# --------------------------------------------------------------------------------------------------
# Invariants of the assembled losses.


def test_spatial_cycle_loss_is_zero_for_an_exact_inverse_and_not_otherwise(tiny_sagan_config):
  model = SAGAN(tiny_sagan_config("wp"))
  params = model.init_params(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  p = jnp.array([0.05, 0.02, 0.1, -0.03, 0.04, -0.08, 0.1, 0.2])
  exact = _set_stm_output(_set_stm_output(params, "S1", p), "S2", -p)
  _, (metrics, _) = model.generator_loss({}, exact, batch, jax.random.PRNGKey(2))
  assert float(metrics["generator/x/scl"]) == 0.0
  off = _set_stm_output(exact, "S2", -0.5 * p)
  _, (metrics, _) = model.generator_loss({}, off, batch, jax.random.PRNGKey(2))
  assert float(metrics["generator/x/scl"]) > 1e-3


def test_pixel_cycle_loss_is_zero_for_identity_generators_and_an_exact_warp(tiny_sagan_config):
  # WP has identity generators. An integer pixel translation is resampled exactly, so PCL is exactly 0
  # inside the frame; a general warp is exact up to two bilinear resamplings (blur, not error).
  c = tiny_sagan_config("wp")
  c.warp_padding = "zeros"
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  shift = jnp.zeros(8).at[2].set(2 * 3 / (W - 1)).at[5].set(-2 * 2 / (H - 1))  # 3 px right, 2 px up
  _, (metrics, _) = model.generator_loss({}, _set_stm_output(params, "S1", shift), batch, jax.random.PRNGKey(2))
  assert float(metrics["generator/x/pcl"]) == 0.0
  general = jnp.array([0.05, 0.02, 0.1, -0.03, 0.04, -0.08, 0.1, 0.2])
  _, (metrics, _) = model.generator_loss({}, _set_stm_output(params, "S1", general), batch, jax.random.PRNGKey(2))
  h = jnp.broadcast_to(geometry.homography_from_params(general), (4, 3, 3))
  h_inv = jnp.broadcast_to(geometry.homography_from_params(-general), (4, 3, 3))
  round_trip = geometry.warp(geometry.warp(batch["x"], h), h_inv)
  inside = geometry.warp(geometry.warp(jnp.ones_like(batch["x_mask"]), h), h_inv)
  expected = float(jnp.sum(jnp.abs(round_trip - batch["x"]) * inside) / (jnp.sum(inside) * 3))
  assert float(metrics["generator/x/pcl"]) == pytest.approx(expected, rel=1e-4)
  assert expected > 0  # bilinear blur of the sharp toy edges, nothing else


def test_residual_generator_starts_as_the_identity_mapping(tiny_sagan_config):
  c = tiny_sagan_config("ws")
  c.generator_residual = True
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  out = model.pixel_adapt(params, "G1", batch["x"], batch["x_mask"])
  # Exact up to the 0.999 clip of saturated pixels.
  np.testing.assert_allclose(np.asarray(out), np.clip(np.asarray(batch["x"]), -0.999, 0.999), atol=1e-5)
  c.generator_residual = False
  plain = SAGAN(c).pixel_adapt(SAGAN(c).init_params(jax.random.PRNGKey(0)), "G1", batch["x"], batch["x_mask"])
  assert float(jnp.mean(jnp.abs(plain - batch["x"]))) > 0.1  # CycleGAN's generator starts far from it


@pytest.mark.parametrize("region", ["person", "background"])
@pytest.mark.parametrize("path, enough", [("pointwise", {"generator_pointwise_features": 4}), ("colour_map", {})])
def test_a_restricted_path_is_refused_where_the_generator_cannot_have_one(tiny_sagan_config, region, path, enough):
  """Both restricted paths need a residual generator and the mask; only "pointwise" needs the colour path."""
  c = tiny_sagan_config("sagan")
  field = f"generator_{region}_path"
  c[field] = path
  with pytest.raises(ConfigError, match=rf"{field}='{path}'.*generator_residual=True"):
    SAGAN(c)  # the tiny config's generator is CycleGAN's: not residual, no colour path
  c.generator_residual = True
  if enough:
    with pytest.raises(ConfigError, match=rf"{field}='{path}'.*generator_pointwise_features > 0"):
      SAGAN(c)
  c.update(enough)
  SAGAN(c)
  c.use_mask = False
  with pytest.raises(ConfigError, match="a mask-free variant sees no person"):
    SAGAN(c)
  c.use_mask, c[field] = True, "face"
  with pytest.raises(ConfigError, match=rf"config.sagan.{field}='face': expected one of"):
    SAGAN(c)


def test_pcl_reaches_the_spatial_transformers_only_when_configured(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.siamese = False
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)

  def pcl_gradient(pcl_trains_stm):
    c.pcl_trains_stm = pcl_trains_stm
    model = SAGAN(c)
    params = model.init_params(jax.random.PRNGKey(0))
    params = _set_stm_output(params, "S1", jnp.array([0.05, 0.02, 0.1, -0.03, 0.04, -0.08, 0.1, 0.2]))
    gen = {k: params[k] for k in model.generator_names}
    pcl = lambda g: model.generator_loss(g, params, batch, jax.random.PRNGKey(2))[1][0]["generator/x/pcl"]
    value, grads = jax.value_and_grad(pcl)(gen)
    norm = lambda name: float(optax.tree.norm(grads[name]))
    return float(value), norm("S1"), norm("G1"), norm("G2")

  through = pcl_gradient(True)
  held = pcl_gradient(False)
  assert held[0] == pytest.approx(through[0], rel=1e-5)  # the same loss value either way
  assert through[1] > 0 and held[1] == 0.0  # S1 learns from PCL only when configured to
  assert held[2] > 0 and held[3] > 0


@pytest.mark.parametrize("mode", ["binary", "none", "straight_through"])
def test_critic_mask_modes_change_only_the_mask_channel(tiny_sagan_config, mode):
  c = tiny_sagan_config("sagan")
  c.critic_mask = mode
  model = SAGAN(c)
  inputs = jnp.concatenate([jnp.zeros((2, H, W, 3)), jnp.full((2, H, W, 1), 0.7)], -1)
  seen = model._critic_input(inputs)
  np.testing.assert_array_equal(np.asarray(seen[..., :3]), 0.0)
  np.testing.assert_array_equal(np.asarray(seen[..., 3]), 0.0 if mode == "none" else 1.0)
  # What reaches S1 through the mask: the identity for straight_through, nothing when rounded or zeroed.
  grad = jax.grad(lambda m: jnp.sum(model._critic_input(jnp.concatenate([inputs[..., :3], m], -1))[..., 3]))
  expected = 1.0 if mode == "straight_through" else 0.0
  np.testing.assert_array_equal(np.asarray(grad(inputs[..., 3:])), expected)


@pytest.mark.parametrize("mode", ["soft", "straight_through", "none"])
def test_critics_restricted_to_the_person_or_the_background_see_the_other_grey(tiny_sagan_config, mode):
  c = tiny_sagan_config("sagan")
  c.critic_mask, c.critic_region = mode, "person"
  model = SAGAN(c)
  mask = jnp.zeros((2, H, W, 1)).at[:, H // 4 : 3 * H // 4].set(0.9)  # a band of person, soft edges
  inputs = jnp.concatenate([jnp.full((2, H, W, 3), 0.5), mask], -1)
  seen = np.asarray(model._critic_input(inputs))
  # RGB × the mask the critic is given (rounded for straight_through; the given one for "none").
  person = 1.0 if mode == "straight_through" else 0.9
  np.testing.assert_allclose(seen[:, : H // 4, :, :3], 0.0)
  np.testing.assert_allclose(seen[:, H // 4 : 3 * H // 4, :, :3], 0.5 * person, rtol=1e-6)
  np.testing.assert_allclose(seen[..., 3], 0.0 if mode == "none" else np.asarray(mask[..., 0]) / 0.9 * person)
  # The complement: the background as it is, the person grey (partly, where the mask is soft).
  c.critic_region = "background"
  seen = np.asarray(SAGAN(c)._critic_input(inputs))
  np.testing.assert_allclose(seen[:, : H // 4, :, :3], 0.5)
  np.testing.assert_allclose(seen[:, H // 4 : 3 * H // 4, :, :3], 0.5 * (1.0 - person), rtol=1e-6, atol=1e-7)
  c.critic_region = "everywhere"
  with pytest.raises(ValueError, match="critic_region"):
    SAGAN(c)


def test_critic_augmentation_moves_rgb_and_mask_together_in_both_players_updates(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.critic_augment, c.siamese = "translation,cutout", False  # SiaNet plays no part here
  model = SAGAN(c)
  mask = jax.random.uniform(jax.random.PRNGKey(0), (4, H, W, 1), minval=0.1, maxval=1.0)
  inputs = jnp.concatenate([mask, mask, mask, mask], -1)  # RGB equal to the mask: both must move alike
  seen = np.asarray(model._critic_input(inputs, jax.random.PRNGKey(1)))
  for channel in range(3):
    np.testing.assert_array_equal(seen[..., channel], seen[..., 3])
  assert (seen == 0).any() and not np.array_equal(seen, np.asarray(inputs))  # shifted in, or cut out
  np.testing.assert_array_equal(np.asarray(model._critic_input(inputs)), np.asarray(inputs))  # no key: as given

  params = model.init_params(jax.random.PRNGKey(2))
  batch = _batch(jax.random.PRNGKey(3), 4, toy_people)
  critics = {n: params[n] for n in model.critic_names}
  generators = {n: params[n] for n in model.generator_names}
  key = jax.random.PRNGKey(4)
  on, _ = model.critic_loss(critics, params, batch, key)
  c.critic_augment = "none"
  off_model = SAGAN(c)
  off, _ = off_model.critic_loss(critics, params, batch, key)  # the same fakes: only the augmentation differs
  assert np.isfinite(float(on)) and float(on) != float(off)
  np.testing.assert_array_equal(np.asarray(off_model._critic_input(inputs, key)), np.asarray(inputs))
  # The generators' update judges augmented fakes too, and D1's judgement reaches G1 through it.
  (_, (on_metrics, _)), (_, (off_metrics, _)) = (
    m.generator_loss(generators, params, batch, key) for m in (model, off_model)
  )
  assert float(on_metrics["generator/x/adversarial"]) != float(off_metrics["generator/x/adversarial"])
  z = model.spatial_codes(key, 4)
  adversarial = lambda g1: model._adversarial(
    params, XY, model.adapt({**params, "G1": g1}, XY, batch["x"], batch["x_mask"], z), key
  )
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(jax.grad(adversarial)(generators["G1"]))]
  assert all(np.isfinite(norms)) and max(norms) > 0
  c.critic_augment = "colour"
  with pytest.raises(ValueError, match=r"config.sagan.critic_augment='colour': unknown augmentation \['colour'\]"):
    SAGAN(c)


def test_categorical_codes_are_scaled_one_hots_drawn_uniformly(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.z_dim = 4
  c.code_distribution = "categorical"
  z = np.asarray(SAGAN(c).spatial_codes(jax.random.PRNGKey(0), 4000))
  # Each row has one entry √4 = 2 and three zeros, so E‖z‖² = z_dim as for N(0, I).
  np.testing.assert_array_equal(np.sort(z, axis=1), np.broadcast_to([0.0, 0.0, 0.0, 2.0], z.shape))
  counts = np.bincount(np.argmax(z, axis=1), minlength=4)
  # Uniform over the 4 categories: each count within 4 binomial standard deviations (±55) of 1000.
  assert np.all(np.abs(counts - 1000) < 4 * np.sqrt(4000 * 0.25 * 0.75)), counts
  c.code_distribution = "normal"
  normal = np.asarray(SAGAN(c).spatial_codes(jax.random.PRNGKey(0), 4000))
  assert abs(normal.mean()) < 0.05 and abs(normal.var() - 1.0) < 0.05 and len(np.unique(normal)) > 0.99 * normal.size
  c.code_distribution = "uniform"
  with pytest.raises(ValueError, match=r"config.sagan.code_distribution='uniform': expected one of"):
    SAGAN(c)


def test_fixed_categorical_codes_hold_every_category_and_fixed_normal_codes_are_the_draw(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.z_dim, c.code_distribution = 4, "categorical"
  key = jax.random.PRNGKey(3)
  z = np.asarray(SAGAN(c).fixed_codes(key, 10))
  # Code k is category k mod 4 (the key unused), scaled as the training draw: every camera of four is
  # scored by ten codes, where ten uniform draws miss one with probability 1 - P(all four seen) = 0.22.
  np.testing.assert_array_equal(np.argmax(z, axis=1), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
  np.testing.assert_array_equal(np.sort(z, axis=1), np.broadcast_to([0.0, 0.0, 0.0, 2.0], z.shape))
  np.testing.assert_array_equal(z, np.asarray(SAGAN(c).fixed_codes(jax.random.PRNGKey(4), 10)))
  c.code_distribution = "normal"
  model = SAGAN(c)
  np.testing.assert_array_equal(np.asarray(model.fixed_codes(key, 10)), np.asarray(model.spatial_codes(key, 10)))


def test_a_zero_siamese_weight_is_the_siamese_switch_off_step_for_step(tiny_sagan_config):
  """λ_siam = 0 builds and trains no SiaNet, so a generator and a critic update equal those with
  ``siamese=False`` bit for bit; a negative weight is refused."""
  steps = {}
  for name, fields in (("off", {"siamese": False}), ("zero", {"lambda_siam": 0.0})):
    c = tiny_sagan_config("sagan")
    c.update(fields)
    model = SAGAN(c)
    assert model.sianet_names == ()
    tx = _tx(model)
    state = create_state(model, tx, 0, parallel.make_mesh(1))
    critic_step, generator_step = make_steps(model, tx, parallel.make_mesh(1))
    batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
    state, _ = critic_step(state, batch)
    state, metrics = generator_step(state, batch)
    steps[name] = (jax.tree.map(np.asarray, state.params), float(metrics["generator/loss"]))
  assert steps["off"][1] == steps["zero"][1]
  jax.tree.map(np.testing.assert_array_equal, steps["off"][0], steps["zero"][0])
  c = tiny_sagan_config("sagan")
  c.lambda_siam = -1.0
  with pytest.raises(ConfigError, match=r"config.sagan.lambda_siam=-1.0: expected a weight ≥ 0"):
    SAGAN(c)


def test_sample_grid_columns_of_categorical_codes_show_each_category_in_turn(tiny_sagan_config):
  from sagan_jax.experiments import samples

  c = tiny_sagan_config("sagan")  # z_dim 2
  c.code_distribution = "categorical"
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  _move_stms_off_the_identity(params)
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, *c.image_size, 3), minval=-1, maxval=1)
  masks = jnp.ones((2, *c.image_size, 1))
  cols = np.asarray(samples._columns(model, params, images, masks, jax.random.PRNGKey(2), 3))
  # Columns: x, then S1(x), G1(S1(x)) per code; code 3 is category 0 again, code 2 is category 1.
  assert cols.shape[1] == 7
  np.testing.assert_array_equal(cols[:, 5:7], cols[:, 1:3])
  assert np.abs(cols[:, 3] - cols[:, 1]).max() > 1e-3


def _move_stms_off_the_identity(params) -> None:
  """S1's and S2's last layers drawn at random: their warps then leave the identity and follow the code."""
  for name, seed in (("S1", 3), ("S2", 4)):
    last = [k for k in params[name] if k.startswith("Dense")][-1]
    shape = params[name][last]["kernel"].shape
    params[name][last]["kernel"] = 0.05 * jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_the_back_stm_in_the_cycle_gets_the_forward_code_or_its_own_draw(tiny_sagan_config):
  """SCL per direction against the cycle computed by hand: with ``cycle_code="shared"`` S2 (and S1
  back) get the forward code, as the paper's Section III-C; with "independent" a draw of their own."""
  c = tiny_sagan_config("sagan")
  c.siamese = False
  params = SAGAN(c).init_params(jax.random.PRNGKey(0))
  _move_stms_off_the_identity(params)  # warps that depend on the code, so the code shows in SCL
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  key = jax.random.PRNGKey(2)
  k_x, k_y = jax.random.split(key)
  cycle_keys = jax.random.split(jax.random.fold_in(key, CYCLE_CODE_STREAM))
  scl = {}
  for cycle_code in ("shared", "independent"):
    c.cycle_code = cycle_code
    model = SAGAN(c)
    generators = {n: params[n] for n in model.generator_names}
    _, (metrics, _) = model.generator_loss(generators, params, batch, key)
    for src, d, k_code, k_back in (("x", XY, k_x, cycle_keys[0]), ("y", YX, k_y, cycle_keys[1])):
      images, masks = batch[src], batch[f"{src}_mask"]
      z = model.spatial_codes(k_code, 4)
      z_back = z if cycle_code == "shared" else model.spatial_codes(k_back, 4)
      a = model.adapt(params, d, images, masks, z)
      _, by_hand = model._cycle_loss(params, d, images, masks, a, z, z_back)
      np.testing.assert_allclose(float(metrics[f"generator/{src}/scl"]), float(by_hand["scl"]), rtol=1e-5)
      scl[cycle_code, src] = float(metrics[f"generator/{src}/scl"])
  assert all(scl["shared", s] != scl["independent", s] for s in "xy")  # the code reached S2 (S1) back
  c.cycle_code = "forward"
  with pytest.raises(ValueError, match=r"config.sagan.cycle_code='forward': expected one of"):
    SAGAN(c)


def test_mode_seeking_pushes_two_codes_warps_apart(tiny_sagan_config):
  """The term alone, on a transformer whose warps already depend a little on the code: its gradient
  steps widen the distance between two codes' warps of the same images."""
  c = tiny_sagan_config("sagan")
  c.siamese, c.lambda_mode_seeking = False, 1.0
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  last = [k for k in params["S1"] if k.startswith("Dense")][-1]
  params["S1"][last]["kernel"] = 0.01 * jax.random.normal(jax.random.PRNGKey(3), params["S1"][last]["kernel"].shape)
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  x = jnp.concatenate([batch["x"], batch["x_mask"]], -1)
  z_a, z_b = model.spatial_codes(jax.random.PRNGKey(5), 4), model.spatial_codes(jax.random.PRNGKey(6), 4)
  spread = lambda p: float(
    jnp.mean(model.warp_distance(model.stm.apply({"params": p}, x, z_a), model.stm.apply({"params": p}, x, z_b)))
  )

  def term(s1, key):
    z = model.spatial_codes(jax.random.fold_in(key, 1), 4)
    p = {**params, "S1": s1}
    a = model.adapt(p, XY, batch["x"], batch["x_mask"], z)
    return model._mode_seeking(p, XY, batch["x"], batch["x_mask"], a, z, key)  # draws the second code from key

  s1, before = params["S1"], spread(params["S1"])
  for k in range(20):
    grads = jax.grad(term)(s1, jax.random.PRNGKey(100 + k))
    s1 = jax.tree.map(lambda p, g: p - 1e-3 * g, s1, grads)
  assert spread(s1) > 2 * before > 0
  loss, (metrics, _) = model.generator_loss(
    {n: params[n] for n in model.generator_names}, params, batch, jax.random.PRNGKey(2)
  )
  assert float(metrics["generator/x/mode_seeking"]) > 0 and np.isfinite(float(loss))
  # Each direction draws its second codes from its own key (both once drew from one).
  keys = []
  spy = SAGAN(c)
  spy._mode_seeking = lambda *args: keys.append(jax.random.key_data(args[-1])) or jnp.zeros(())
  spy.generator_loss({n: params[n] for n in model.generator_names}, params, batch, jax.random.PRNGKey(2))
  assert len(keys) == 2 and not np.array_equal(np.asarray(keys[0]), np.asarray(keys[1]))
  c.lambda_mode_seeking = 0.0
  generators = {n: params[n] for n in model.generator_names}
  _, (off, _) = SAGAN(c).generator_loss(generators, params, batch, jax.random.PRNGKey(2))
  assert "generator/x/mode_seeking" not in off


def test_background_identity_term_is_g_change_outside_the_warped_mask_and_pulls_g_towards_it(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.siamese, c.lambda_background_idt = False, 3.0
  model, off_model = SAGAN(c), SAGAN({**c, "lambda_background_idt": 0.0})
  params = model.init_params(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  key = jax.random.PRNGKey(3)
  generators = {n: params[n] for n in model.generator_names}
  on, (metrics, _) = model.generator_loss(generators, params, batch, key)
  off, (off_metrics, _) = off_model.generator_loss(generators, params, batch, key)
  # Brute force: G1's translation with the loss's own code, against S1(x) outside the warped mask.
  z = model.spatial_codes(jax.random.split(key)[0], 4)
  a = model.adapt(params, XY, batch["x"], batch["x_mask"], z)
  outside = 1 - np.asarray(a.mask)
  expected = np.sum(np.abs(np.asarray(a.adapted) - np.asarray(a.spatial)) * outside) / (outside.sum() * 3)
  assert float(metrics["generator/x/background_identity"]) == pytest.approx(expected, rel=1e-4)
  assert expected > 1e-3  # G starts away from the identity on the background: the term has work to do
  both = float(metrics["generator/x/background_identity"]) + float(metrics["generator/y/background_identity"])
  assert float(on) == pytest.approx(float(off) + 3.0 * both, rel=1e-5)
  assert "generator/x/background_identity" not in off_metrics

  term = lambda g: model.generator_loss(g, params, batch, key)[1][0]["generator/x/background_identity"]
  gradient = jax.jit(jax.grad(term))
  g = generators
  for _ in range(15):
    g = jax.tree.map(lambda p, d: p - 0.05 * d, g, gradient(g))
  assert float(term(g)) < 0.5 * float(metrics["generator/x/background_identity"])

  with pytest.raises(ConfigError, match=r"config.sagan.lambda_background_idt=-1.0: expected a weight ≥ 0"):
    SAGAN({**c, "lambda_background_idt": -1.0})
  with pytest.raises(ConfigError, match=r"lambda_background_idt=3.0 needs the mask.*use_mask=True"):
    SAGAN({**c, "use_mask": False})
  # The CycleGAN rows see no mask: their variant turns the term off whatever the experiment sets.
  cyclegan = tiny_sagan_config("sagan")
  cyclegan.lambda_background_idt = 3.0
  assert apply_variant(cyclegan, "cyclegan").lambda_background_idt == 0.0


def _projection_features(projection, images):
  """A stand-in frozen re-ID network: a fixed linear map of the flattened RGB."""
  return images.reshape(images.shape[0], -1) @ projection


def test_reid_term_is_the_feature_identity_loss_of_g1_alone_and_pulls_g1_towards_it(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.siamese, c.lambda_reid = False, 2.0
  model, off_model = SAGAN(c), SAGAN({**c, "lambda_reid": 0.0})
  params = model.init_params(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  projection = jax.random.normal(jax.random.PRNGKey(2), (H * W * 3, 8))
  features = lambda images: _projection_features(projection, images)
  key = jax.random.PRNGKey(3)
  generators = {n: params[n] for n in model.generator_names}
  on, (metrics, _) = model.generator_loss(generators, params, batch, key, identity_features=features)
  off, (off_metrics, _) = off_model.generator_loss(generators, params, batch, key)
  # Brute force: the X→Y translation with the loss's own code, against S1's warp of the same image.
  z = model.spatial_codes(jax.random.split(key)[0], 4)
  a = model.adapt(params, XY, batch["x"], batch["x_mask"], z)
  f, anchor = np.asarray(features(a.adapted)), np.asarray(features(a.spatial))
  cos = np.sum(f * anchor, -1) / np.linalg.norm(f, axis=-1) / np.linalg.norm(anchor, axis=-1)
  assert float(metrics["generator/x/reid"]) == pytest.approx(float(np.mean(1 - cos)), rel=1e-4)
  assert float(metrics["generator/x/reid"]) > 0.01  # G1 starts away from the identity: the term has work to do
  assert float(on) == pytest.approx(float(off) + 2.0 * float(metrics["generator/x/reid"]), rel=1e-5)
  assert "generator/y/reid" not in metrics and "generator/x/reid" not in off_metrics

  # Only G1 (and S1, through G1's input) is asked to keep the identity: G2 gets no gradient from it.
  term = lambda g: model.generator_loss(g, params, batch, key, identity_features=features)[1][0]["generator/x/reid"]
  gradient = jax.jit(jax.grad(term))
  grads = gradient(generators)
  assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(grads["G2"])) == 0.0
  assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(grads["G1"])) > 0.0
  g = generators
  for _ in range(15):
    g = jax.tree.map(lambda p, d: p - 0.05 * d, g, gradient(g))
  _, (after, _) = model.generator_loss(g, params, batch, key, identity_features=features)
  assert float(after["generator/x/reid"]) < 0.5 * float(metrics["generator/x/reid"])

  # The compiled step takes the network's variables beside the batch.
  state = create_state(model, _tx(model), 0)
  _, generator_step = make_steps(model, _tx(model), parallel.make_mesh(1), _projection_features)
  _, step_metrics = generator_step(state, batch, projection)
  assert np.isfinite(float(step_metrics["generator/x/reid"]))
  with pytest.raises(ConfigError, match=r"config.sagan.lambda_reid=2.0 needs a re-ID network's features"):
    model.generator_loss(generators, params, batch, key)
  # WP has no G1, so no term and no network to ask for.
  wp = SAGAN({**tiny_sagan_config("wp"), "siamese": False, "lambda_reid": 2.0})
  assert not wp.uses_reid and model.uses_reid and not off_model.uses_reid
  wp_params = wp.init_params(jax.random.PRNGKey(0))
  _, (wp_metrics, _) = wp.generator_loss({n: wp_params[n] for n in wp.generator_names}, wp_params, batch, key)
  assert "generator/x/reid" not in wp_metrics
  with pytest.raises(ConfigError, match=r"config.sagan.lambda_reid=-1.0: expected a weight ≥ 0"):
    SAGAN({**c, "lambda_reid": -1.0})


# --------------------------------------------------------------------------------------------------
# The compiled steps.


def _adam_first_moment(opt_state) -> dict:
  found = [
    leaf
    for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
    if isinstance(leaf, optax.ScaleByAdamState)
  ]
  assert len(found) == 1, opt_state
  return found[0].mu


def test_sharded_steps_match_the_single_device_steps_and_compile_once(tiny_sagan_config):
  assert jax.device_count() == 4, "tests/conftest.py sets up 4 CPU devices"
  c = tiny_sagan_config()
  model = SAGAN(c)
  batches = [_batch(jax.random.PRNGKey(i), 8, toy_people) for i in range(2)]
  results = {}
  for n in (1, 4):
    mesh = parallel.make_mesh(n)
    state = create_state(model, _tx(model), 0, mesh)
    critic_step, generator_step = make_steps(model, _tx(model), mesh)
    metrics = []
    for i, batch in enumerate(batches):
      state, critic_metrics = critic_step(state, batch)
      state, generator_metrics = generator_step(state, batch)
      metrics.append((critic_metrics, generator_metrics))
      if i == 0:
        # After one Adam step each group's first moment is (1 - b1)·gradient: the critics' and
        # the generators' gradients on a batch sharded over n devices, without compiling them apart.
        grads = {
          name: mu
          for group in ("critic", "generator", "sianet")
          for name, mu in _adam_first_moment(state.opt_state[group]).items()
        }
        grads = jax.device_get(grads)
    assert critic_step._cache_size() == 1 and generator_step._cache_size() == 1  # no recompilation
    results[n] = (grads, jax.device_get(state.params), jax.device_get(metrics))
  assert int(state.step) == 2 and int(state.critic_steps) == 2
  (grads_1, params_1, metrics_1), (grads_4, params_4, metrics_4) = results[1], results[4]
  # Gradients agree to 1e-5 of their network's largest entry (float32 reduction order), with room
  # for a LeakyReLU whose input lies within rounding of 0 and so takes the other slope: on this
  # batch 46 of D2's 43,313 entries (0.1 %) moved by up to 2.4e-4 of its scale that way when the
  # generators' upsampling changed its rounding, while batches from keys 1 and 2 agree to 5e-7
  # (one-off runs of this test's steps).
  # This caught flax's one-pass instance-norm variance, which put 1-5 % between these (see
  # models/generator.py).
  for name in grads_1:
    scale = max(float(np.abs(a).max()) for a in jax.tree.leaves(grads_1[name]))
    pairs = zip(jax.tree.leaves(grads_1[name]), jax.tree.leaves(grads_4[name]))
    diff = np.concatenate([np.abs(a - b).ravel() for a, b in pairs])
    assert diff.max() <= 1e-3 * scale, (name, diff.max() / scale)
    assert (diff > 1e-5 * scale).mean() <= 0.01, (name, (diff > 1e-5 * scale).mean())
  # The first critic step starts from identical states: every loss term agrees to float precision.
  for k, v in metrics_1[0][0].items():
    np.testing.assert_allclose(v, metrics_4[0][0][k], atol=1e-5, rtol=1e-5, err_msg=k)
  # Later steps start from states that differ by Adam's sign flips (below): agreement to 0.1%.
  for step in range(2):
    for k, v in {**metrics_1[step][0], **metrics_1[step][1]}.items():
      np.testing.assert_allclose(v, {**metrics_4[step][0], **metrics_4[step][1]}[k], atol=1e-4, rtol=1e-3, err_msg=k)
  # Parameters: Adam's first updates are ±lr wherever a gradient is not within float noise of zero,
  # so a reduction-order difference can flip an update (2·lr per step) where a gradient entry is
  # itself rounding noise (e.g. a convolution bias that instance normalisation cancels).
  diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_4))])
  assert diffs.max() <= 2 * 2 * c.learning_rate * 1.01
  assert (diffs > 1e-5).mean() < 0.005, (diffs > 1e-5).mean()  # measured: 0.12 %
  # The steps changed every network.
  initial = create_state(model, _tx(model), 0).params
  for name in initial:
    moved = max(
      float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(initial[name]), jax.tree.leaves(params_1[name]))
    )
    assert moved > 0, name


def test_critic_and_sianet_gradients_are_the_same_with_flax_and_cpu_layers(tiny_sagan_config):
  """sagan_jax.cpu's product gradients and flax's agree, WGAN-GP's second derivative included.

  The tiny config has layers on both sides of cpu.conv's limit (the critics' one-channel output
  keeps XLA's gradients). The generator's are tests/test_models.py's and tests/test_cpu.py's.
  """
  c = tiny_sagan_config()
  models = {"xla": SAGAN(c), "matmul": SAGAN(c, layers=cpu.layers())}
  params = models["xla"].init_params(jax.random.PRNGKey(0))
  batch, key = _batch(jax.random.PRNGKey(1), 4, toy_people), jax.random.PRNGKey(2)

  def gradients(model):
    group = lambda names: {n: params[n] for n in names}
    critic = jax.grad(model.critic_loss, has_aux=True)(group(model.critic_names), params, batch, key)[0]
    x, y = batch["x"], batch["y"]  # eq. 6's six image sets; any images do to compare gradients
    images = {"x": x, "y": y, "x_s": x[::-1], "x_adp": -x, "y_s": y[::-1], "y_adp": -y}
    sianet = jax.grad(model.sianet_loss, has_aux=True)(group(model.sianet_names), images)[0]
    return {**critic, **sianet}

  # Product gradients are dots and pads: fewer convolutions in the differentiated program.
  convs = {
    impl: str(jax.make_jaxpr(lambda m=m: gradients(m))()).count("conv_general_dilated[") for impl, m in models.items()
  }
  assert convs["matmul"] < convs["xla"], convs
  ours = jax.tree_util.tree_leaves_with_path(jax.jit(lambda: gradients(models["matmul"]))())
  ref = jax.tree_util.tree_leaves_with_path(jax.jit(lambda: gradients(models["xla"]))())
  assert [p for p, _ in ours] == [p for p, _ in ref] and len(ours) > 20
  # float32 rounding differs (other summation orders), amplified by the normalisation layers'
  # backward: agreement to 1e-4 of the network's largest gradient entry. (Per leaf is no scale: the
  # bias of a layer followed by instance norm has a zero gradient, and both give rounding noise.)
  scale = {}
  for path, b in ref:
    scale[path[0].key] = max(scale.get(path[0].key, 0.0), float(jnp.abs(b).max()))
  for (path, a), (_, b) in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale[path[0].key], err_msg=jax.tree_util.keystr(path))


def test_bfloat16_steps_run_with_float32_parameters(tiny_sagan_config):
  # WS: the convolutional networks are what bfloat16 changes (the warp's bfloat16 path is covered in
  # test_geometry.py), at half the compile time of the full model.
  c = tiny_sagan_config("ws")
  c.dtype = "bfloat16"
  model = SAGAN(c)
  mesh = parallel.make_mesh(1)
  critic_step, generator_step = make_steps(model, _tx(model), mesh)
  state = create_state(model, _tx(model), 0, mesh)
  batch = _batch(jax.random.PRNGKey(0), 4, toy_people)
  state, cm = critic_step(state, batch)
  state, gm = generator_step(state, batch)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
  assert all(np.isfinite(float(v)) for v in {**cm, **gm}.values())


def test_weight_clipping_keeps_critic_weights_in_range(tiny_sagan_config):
  c = tiny_sagan_config("ws")
  c.lipschitz, c.clip_value = "weight_clipping", 0.01
  model = SAGAN(c)
  mesh = parallel.make_mesh(1)
  critic_step, _ = make_steps(model, _tx(model), mesh)
  state, metrics = critic_step(create_state(model, _tx(model), 0, mesh), _batch(jax.random.PRNGKey(0), 4, toy_people))
  assert "critic/D1/gradient_penalty" not in metrics
  for name in model.critic_names:
    assert max(float(jnp.abs(p).max()) for p in jax.tree.leaves(state.params[name])) <= 0.01 + 1e-7


def test_translate_gives_num_codes_outputs_and_identity_at_initialisation(tiny_sagan_config):
  model = SAGAN(tiny_sagan_config("wp"))  # identity generators: at init the whole mapping is the identity
  params = model.init_params(jax.random.PRNGKey(0))
  x, x_mask = toy_people(jax.random.PRNGKey(1), 8)
  mesh = parallel.make_mesh()
  x_sharded = jax.device_put(x, parallel.batch_sharded(mesh))
  adapted, masks, transforms = translate(model, params, x_sharded, x_mask, 3, jax.random.PRNGKey(2))
  assert adapted.shape == (8, 3, H, W, 3) and masks.shape == (8, 3, H, W, 1) and transforms.shape == (8, 3, 8)
  np.testing.assert_array_equal(adapted, jnp.broadcast_to(x[:, None], adapted.shape))
  np.testing.assert_array_equal(transforms, 0.0)
  # Once S1 depends on the code, the M translations of one image differ.
  moved = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(3), p.shape), params)
  adapted, _, transforms = translate(model, moved, x, x_mask, 3, jax.random.PRNGKey(2))
  assert float(jnp.abs(transforms[:, 0] - transforms[:, 1]).max()) > 1e-3
  assert float(jnp.abs(adapted[:, 0] - adapted[:, 1]).max()) > 1e-3


def test_a_translation_region_keeps_g1_on_one_side_of_the_mask_and_the_warped_source_on_the_other(
  tiny_sagan_config,
):
  model = SAGAN(tiny_sagan_config("sagan"))
  params = model.init_params(jax.random.PRNGKey(0))  # the STMs start at the identity warp: S1(x) = x
  noise = lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(3), p.shape)
  params = {k: jax.tree.map(noise, v) if k == "G1" else v for k, v in params.items()}
  x, x_mask = toy_people(jax.random.PRNGKey(1), 8)
  whole, masks, _ = translate(model, params, x, x_mask, 2, jax.random.PRNGKey(2))
  person, person_masks, _ = translate(model, params, x, x_mask, 2, jax.random.PRNGKey(2), "person")
  background_only, _, _ = translate(model, params, x, x_mask, 2, jax.random.PRNGKey(2), "background")
  np.testing.assert_array_equal(person_masks, masks)
  np.testing.assert_allclose(masks, jnp.broadcast_to(x_mask[:, None], masks.shape), atol=1e-5)
  np.testing.assert_allclose(person, masks * whole + (1 - masks) * x[:, None], atol=1e-5)
  np.testing.assert_allclose(background_only, masks * x[:, None] + (1 - masks) * whole, atol=1e-5)
  inside, outside = masks[..., 0] > 0.99, masks[..., 0] < 0.01
  assert inside.any() and outside.any()
  change = jnp.abs(whole - x[:, None]).max(-1)
  assert float(change[outside].max()) > 1e-3 and float(change[inside].max()) > 1e-3  # G1 changed both sides
  with pytest.raises(ValueError, match="region must be one of"):
    translate(model, params, x, x_mask, 2, jax.random.PRNGKey(2), "face")
  # A strength keeps that share of G1's change where its pixels are kept, and the warp whole.
  key = jax.random.PRNGKey(2)
  quarter, quarter_masks, _ = translate(model, params, x, x_mask, 2, key, "frame", 0.25)
  np.testing.assert_array_equal(quarter_masks, masks)
  np.testing.assert_allclose(quarter, 0.75 * x[:, None] + 0.25 * whole, atol=1e-5)
  person_half, _, _ = translate(model, params, x, x_mask, 2, key, "person", 0.5)
  np.testing.assert_allclose(person_half, masks * (x[:, None] + whole) / 2 + (1 - masks) * x[:, None], atol=1e-5)
  warp_alone, _, _ = translate(model, params, x, x_mask, 2, key, "frame", 0.0)
  np.testing.assert_allclose(warp_alone, jnp.broadcast_to(x[:, None], warp_alone.shape), atol=1e-5)
  with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\], got 1.5"):
    translate(model, params, x, x_mask, 2, key, "frame", 1.5)


# --------------------------------------------------------------------------------------------------
# Learning.


def _train(model, state, steps, n_critic, target_fn, key, batch_size=16):
  mesh = parallel.make_mesh(1)
  critic_step, generator_step = make_steps(model, _tx(model), mesh)
  for _ in range(steps):
    for _ in range(n_critic):
      key, k = jax.random.split(key)
      state, critic_metrics = critic_step(state, _batch(k, batch_size, target_fn))
    key, k = jax.random.split(key)
    state, generator_metrics = generator_step(state, _batch(k, batch_size, target_fn))
  return state, critic_metrics, generator_metrics


@pytest.mark.xla_optimized
def test_spatial_path_recovers_a_known_homography(tiny_sagan_config):
  """Domains related only by a homography: S1 must learn it from unpaired images (WP: spatial path)."""
  p_true = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.15, 0.0, 0.35])  # shift down + vertical keystone
  h_true = geometry.homography_from_params(p_true)

  def target(key, n):
    img, mask = toy_people(key, n)
    out = geometry.warp(jnp.concatenate([img, mask], -1), jnp.broadcast_to(h_true, (n, 3, 3)), padding="border")
    return out[..., :3], out[..., 3:]

  corners = jnp.array([[-1.0, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1], [0, 0, 1]])

  def corner_error(params):
    """Mean distance (normalised units) between where T_xy and the true H send five points."""
    x, x_mask = toy_people(jax.random.PRNGKey(999), 32)
    z = model.spatial_codes(jax.random.PRNGKey(5), 32)
    p = model.stm.apply({"params": params["S1"]}, jnp.concatenate([x, x_mask], -1), z)
    project = lambda h: (corners @ h.T)[:, :2] / (corners @ h.T)[:, 2:]
    learned = jax.vmap(project)(geometry.homography_from_params(p))
    return float(jnp.mean(jnp.linalg.norm(learned - project(h_true)[None], axis=-1)))

  c = tiny_sagan_config("wp")
  c.siamese = False
  c.learning_rate, c.n_critic = 1e-3, 2
  model = SAGAN(c)
  state = create_state(model, _tx(model), 0, parallel.make_mesh(1))
  before = corner_error(state.params)
  state, _, _ = _train(model, state, steps=150, n_critic=c.n_critic, target_fn=target, key=jax.random.PRNGKey(1))
  after = corner_error(state.params)
  print(f"corner error of T_xy: {before:.3f} -> {after:.3f} after 150 steps")
  # Measured on this configuration: 0.382 → 0.055 (0.033 on the previous session's VM).
  assert after < 0.5 * before, (before, after)


@pytest.mark.xla_optimized
def test_pixel_path_moves_towards_a_colour_shifted_domain(tiny_sagan_config):
  """Domains related only by a colour shift: PCL falls and G1's outputs look more like Y to the critic."""

  def target(key, n):
    img, mask = toy_people(key, n)
    shifted = jnp.clip(((img + 1) / 2)[..., ::-1] * 0.8 + jnp.array([0.15, 0.1, 0.0]), 0, 1)  # swap R/B, tint
    return shifted * 2 - 1, mask

  c = tiny_sagan_config("ws")
  c.siamese = False
  c.learning_rate, c.n_critic = 1e-3, 2
  # CycleGAN's generator (the default), which starts from a random output: what this test's figures
  # measure (the short-budget recipe's residual one starts at the identity; test_experiments_paired.py).
  c.generator_residual, c.generator_pointwise_features = False, 0
  model = SAGAN(c)
  x, x_mask = toy_people(jax.random.PRNGKey(100), 64)
  y, y_mask = target(jax.random.PRNGKey(101), 64)

  def evaluate(params):
    fake = model.pixel_adapt(params, "G1", x, x_mask)
    pcl = float(jnp.mean(jnp.abs(model.pixel_adapt(params, "G2", fake, x_mask) - x)))
    critic = lambda img: float(
      jnp.mean(model._critic_scores(params, XY.critic, jnp.concatenate([img, y_mask if img is y else x_mask], -1)))
    )
    mean_colour = lambda img: jnp.mean(img, axis=(0, 1, 2))
    return {
      "pcl": pcl,
      "wasserstein_translated": critic(y) - critic(fake),
      "wasserstein_source": critic(y) - critic(x),
      "colour_gap_translated": float(jnp.linalg.norm(mean_colour(fake) - mean_colour(y))),
      "colour_gap_source": float(jnp.linalg.norm(mean_colour(x) - mean_colour(y))),
    }

  colour_gap = jax.jit(
    lambda params: jnp.linalg.norm(
      jnp.mean(model.pixel_adapt(params, "G1", x, x_mask), axis=(0, 1, 2)) - jnp.mean(y, axis=(0, 1, 2))
    )
  )
  state = create_state(model, _tx(model), 0, parallel.make_mesh(1))
  before = evaluate(state.params)
  # 150 steps in chunks of 5. The generator and critic chase each other, so G1's mean colour
  # oscillates around Y's (gap 0.01-0.31 at single snapshots from step 10 on, measured): the colour
  # criterion is the mean gap over the twenty snapshots of steps 55-150.
  key, gaps = jax.random.PRNGKey(3), []
  for _ in range(30):
    key, k = jax.random.split(key)
    state, critic_metrics, _ = _train(model, state, steps=5, n_critic=2, target_fn=target, key=k)
    gaps.append(float(colour_gap(state.params)))
  after = evaluate(state.params)
  print(
    "colour shift, before:",
    before,
    "after 150 steps:",
    after,
    f"mean colour gap over steps 55-150: {np.mean(gaps[-20:]):.3f}; every 25 steps:",
    np.round(gaps[4::5], 3),
  )
  # Measured (pytest -s): PCL 0.86 → 0.23. G1(X)'s colour gap to Y starts at 1.05 (X's own:
  # 0.237); its mean over steps 55-150 was 0.150, and in one-off runs 0.133 with initial
  # parameters of seed 1, 0.144 and 0.155 on the build before the generators' upsampling changed
  # its rounding. A rounding change anywhere
  # moves this figure by a few hundredths, so the bound sits between those figures and X's gap:
  # 0.8 of it, 0.190, which G1 passes only by learning the colour shift, not by copying X. (Two
  # earlier bounds nearer the measured figures, 0.5 and 0.6 of X's gap on fewer snapshots, each
  # failed after a last-bit change: runtime.jit_init, then ops.conv_transpose.) The critic's
  # Wasserstein estimate W(Y, G1(X)) rises from ~0 (critic loss falls) as it learns to separate
  # them.
  assert before["colour_gap_translated"] > 0.8 * after["colour_gap_source"], before  # untrained G1 fails it
  assert after["pcl"] < 0.5 * before["pcl"], (before, after)
  assert np.mean(gaps[-20:]) < 0.8 * after["colour_gap_source"], (gaps, after)
  assert after["wasserstein_translated"] > before["wasserstein_translated"] + 0.1, (before, after)
  assert float(critic_metrics["critic/D1/wasserstein"]) > 0


def test_paper_scale_networks_and_steps_trace_in_bfloat16():
  """The paper's configuration (256×128, CycleGAN's networks), which configs/market2prid.py trains.

  Only shapes are traced: compiling these steps takes minutes on a CPU. The parameter counts are
  CycleGAN's published ones (resnet_9blocks G 11.378 M, 70×70 PatchGAN D 2.765 M) plus what SA-GAN
  adds: the human mask's input channel, the generators' per-pixel colour path and the critic's
  affine layer norms. The steps must hand back
  the state they take, leaf for leaf (shape and dtype), or jit would retrace every update.
  """
  c = sagan_config()
  c.dtype = "bfloat16"  # the accelerator targets' compute dtype; parameters stay float32
  model = SAGAN(c)
  state = jax.eval_shape(lambda: create_state(model, _tx(model), 0))
  count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))
  mask_channel = lambda k, cout: k * k * cout  # one more input channel of the first convolution
  f = c.generator_pointwise_features  # the per-pixel colour path: 1×1 convs 3 → f → f → 3
  pointwise = (3 * f + f) + (f * f + f) + (f * 3 + 3) if f else 0  # 0: the paper's generator has no such path
  for name in ("G1", "G2"):  # CycleGAN's G_A, ngf 64, first layer 7×7 → 64
    assert count(state.params[name]) == 11_378_179 + mask_channel(7, 64) + pointwise
  for name in ("D1", "D2"):  # CycleGAN's D_A, ndf 64, first layer 4×4 → 64; layer norms on C128, C256, C512
    assert count(state.params[name]) == 2_764_737 + mask_channel(4, 64) + 2 * (128 + 256 + 512)
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(state.params)} == {jnp.dtype(jnp.float32)}

  mesh = parallel.make_mesh()
  h, w = c.image_size
  sharded = parallel.batch_sharded(mesh)
  batch = {
    name: jax.ShapeDtypeStruct((8, h, w, channels), jnp.float32, sharding=sharded)
    for name, channels in (("x", 3), ("x_mask", 1), ("y", 3), ("y_mask", 1))
  }
  layout = lambda tree: jax.tree_util.tree_map(lambda leaf: (leaf.shape, leaf.dtype), tree)
  for step in make_steps(model, _tx(model), mesh):
    new_state, metrics = jax.eval_shape(step, state, batch)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert layout(new_state) == layout(state)
    assert metrics and all(m.shape == () and m.dtype == jnp.float32 for m in metrics.values())


def test_scl_trains_in_both_cycles_or_only_in_the_one_that_starts_on_the_source(tiny_sagan_config):
  """``scl_cycles="source"`` drops SCL from the Y→X→Y cycle's loss and keeps it in X→Y→X; both SCLs
  are still reported, equal to the paper's setting's, so only the loss changes."""
  c = tiny_sagan_config("sagan")
  c.siamese = False
  params = SAGAN(c).init_params(jax.random.PRNGKey(0))
  _move_stms_off_the_identity(params)  # at the identity SCL would be 0
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  metrics = {}
  for scl_cycles in ("both", "source"):
    c.scl_cycles = scl_cycles
    model = SAGAN(c)
    generators = {n: params[n] for n in model.generator_names}
    _, (m, _) = model.generator_loss(generators, params, batch, jax.random.PRNGKey(2))
    metrics[scl_cycles] = {k: float(v) for k, v in m.items()}
  both, source = metrics["both"], metrics["source"]
  for src in "xy":
    assert both[f"generator/{src}/scl"] > 0
    assert source[f"generator/{src}/scl"] == both[f"generator/{src}/scl"]
    assert source[f"generator/{src}/pcl"] == both[f"generator/{src}/pcl"]
    by_hand = both[f"generator/{src}/scl"] + c.lambda_pcl * both[f"generator/{src}/pcl"]
    np.testing.assert_allclose(both[f"generator/{src}/cycle"], by_hand, rtol=1e-6)
  assert source["generator/x/cycle"] == both["generator/x/cycle"]
  np.testing.assert_allclose(source["generator/y/cycle"], c.lambda_pcl * both["generator/y/pcl"], rtol=1e-6)
  np.testing.assert_allclose(
    both["generator/loss"] - source["generator/loss"], c.lambda_cyc * both["generator/y/scl"], rtol=1e-4
  )
  c.scl_cycles = "target"
  with pytest.raises(ValueError, match=r"config.sagan.scl_cycles='target': expected one of"):
    SAGAN(c)


def test_the_paper_has_one_spatial_critic_and_our_default_one_per_direction(tiny_sagan_config):
  """``spatial_critics="source"`` keeps DT1 (T_xy against (T_yx)⁻¹) and drops DT2: no DT2 network, no
  DT2 term in the critic loss (the total falls by exactly its term), and S2's forward warp is no
  longer judged, so the Y→X adversarial term ignores a DT2 it is handed while X→Y's is unchanged."""
  c = tiny_sagan_config("sagan")
  c.siamese = False
  params = SAGAN(c).init_params(jax.random.PRNGKey(0))
  _move_stms_off_the_identity(params)  # distinct warps, so DT2's score of T_yx is not DT1's of T_xy
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  models = {}
  for spatial_critics in ("both", "source"):
    c.spatial_critics = spatial_critics
    models[spatial_critics] = SAGAN(c)
  both, source = models["both"], models["source"]
  assert both.critic_names == ("D1", "D2", "DT1", "DT2") and source.critic_names == ("D1", "D2", "DT1")
  assert set(source.init_params(jax.random.PRNGKey(0))) == set(params) - {"DT2"}

  key = jax.random.PRNGKey(2)
  critic_total, critic_metrics = {}, {}
  for name, model in models.items():
    critics = {n: params[n] for n in model.critic_names}
    loss, m = model.critic_loss(critics, params, batch, key)
    critic_total[name], critic_metrics[name] = float(loss), {k: float(v) for k, v in m.items()}
  assert not any(k.startswith("critic/DT2/") for k in critic_metrics["source"])
  for k, v in critic_metrics["source"].items():
    if k != "critic/loss":
      assert v == critic_metrics["both"][k], k  # the same fakes and penalty draws for D1, D2 and DT1
  dt2 = -critic_metrics["both"]["critic/DT2/wasserstein"]
  dt2 += c.lambda_gp * critic_metrics["both"]["critic/DT2/gradient_penalty"]
  np.testing.assert_allclose(critic_total["both"] - critic_total["source"], dt2, rtol=1e-5, atol=1e-6)

  def adversarial(model, dt2_scale):
    p = {**params, "DT2": jax.tree_util.tree_map(lambda a: dt2_scale * a, params["DT2"])}
    generators = {n: p[n] for n in model.generator_names}
    _, (m, _) = model.generator_loss(generators, p, batch, jax.random.PRNGKey(3))
    return float(m["generator/x/adversarial"]), float(m["generator/y/adversarial"])

  x_both, y_both = adversarial(both, 1.0)
  x_source, y_source = adversarial(source, 1.0)
  assert x_source == x_both
  assert adversarial(both, 3.0)[1] != y_both  # DT2 judges S2's warp under "both"
  assert adversarial(source, 3.0)[1] == y_source != y_both  # and nothing does under "source"
  c.spatial_critics = "target"
  with pytest.raises(ValueError, match=r"config.sagan.spatial_critics='target': expected one of"):
    SAGAN(c)


def test_camera_critics_judge_each_translation_as_the_camera_its_code_names(tiny_sagan_config):
  """With ``camera_critics`` S1's code for source image i is the one-hot of target image i's camera
  (times √K), and D1 and DT1 score real y_i and the fake paired with it by that camera's output:
  the critic loss against a brute force over the K-output networks, and the codes against S1 run by
  hand. D2 and DT2 keep one output; a camera index outside the batch's changes D1's loss."""
  c = tiny_sagan_config("sagan")
  c.siamese = False
  c.camera_critics, c.code_distribution, c.z_dim = True, "categorical", 3
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  _move_stms_off_the_identity(params)

  def outputs(name, kind):  # the width of the network's last layer of that kind
    last = max((k for k in params[name] if k.startswith(kind)), key=lambda k: int(k.rsplit("_", 1)[1]))
    return params[name][last]["kernel"].shape[-1]

  assert (outputs("D1", "Conv"), outputs("D2", "Conv"), outputs("DT1", "Dense"), outputs("DT2", "Dense")) == (
    3,
    1,
    3,
    1,
  )
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  batch["y_camera"] = jnp.asarray([2, 0, 1, 2], jnp.int32)
  key = jax.random.PRNGKey(2)
  fakes = model.fake_images(params, batch, key)
  codes = jax.nn.one_hot(batch["y_camera"], 3) * np.sqrt(3)
  by_hand = model.adapt(params, XY, batch["x"], batch["x_mask"], codes)
  np.testing.assert_allclose(fakes["y"].transform, by_hand.transform, rtol=1e-6, atol=1e-7)

  c.lipschitz = "none"  # the Wasserstein estimates alone, against the brute force
  model = SAGAN(c)
  critics = {n: params[n] for n in model.critic_names}
  _, metrics = model.critic_loss(critics, params, batch, key)
  rows = np.arange(4)

  def d1(images, masks):
    out = np.asarray(model.critics["D1"].apply({"params": params["D1"]}, jnp.concatenate([images, masks], -1)))
    return out.mean(axis=(1, 2))[rows, np.asarray(batch["y_camera"])]

  wasserstein = d1(batch["y"], batch["y_mask"]).mean() - d1(fakes["y"].adapted, fakes["y"].mask).mean()
  np.testing.assert_allclose(float(metrics["critic/D1/wasserstein"]), wasserstein, rtol=1e-5, atol=1e-5)
  dt1 = lambda p: np.asarray(model.spatial_critics["DT1"].apply({"params": params["DT1"]}, p))[
    rows, np.asarray(batch["y_camera"])
  ]
  real_t = -np.asarray(fakes["x"].transform)  # (T_yx)⁻¹ of a homography is −p (sl(3) parameters)
  np.testing.assert_allclose(
    float(metrics["critic/DT1/wasserstein"]),
    dt1(real_t).mean() - dt1(fakes["y"].transform).mean(),
    rtol=1e-5,
    atol=1e-5,
  )
  moved = {**batch, "y_camera": (batch["y_camera"] + 1) % 3}
  _, other = model.critic_loss(critics, params, moved, key)
  assert float(other["critic/D1/wasserstein"]) != float(metrics["critic/D1/wasserstein"])
  assert float(other["critic/D2/wasserstein"]) == float(metrics["critic/D2/wasserstein"])  # Y→X: no camera

  with pytest.raises(ValueError, match=r"camera_critics needs batch\['y_camera'\]"):
    model.fake_images(params, {k: v for k, v in batch.items() if k != "y_camera"}, key)
  c.code_distribution = "normal"
  with pytest.raises(ValueError, match=r"camera_critics=True .*code_distribution=categorical"):
    SAGAN(c)
  c.code_distribution, c.history_pool = "categorical", 50
  with pytest.raises(ValueError, match=r"history_pool=50: pooled fakes"):
    SAGAN(c)


def test_camera_critics_refuse_a_code_count_other_than_the_targets_cameras(tiny_sagan_config, tmp_path):
  """The trainer checks z_dim against the adaptation's target cameras before it writes anything."""
  from sagan_jax.sagan import train as sagan_train

  c = tiny_sagan_config("sagan")
  c.camera_critics, c.code_distribution, c.z_dim = True, "categorical", 3
  with pytest.raises(ConfigError, match=r"target has 2 cameras \[1, 2\]: set --config.sagan.z_dim=2"):
    sagan_train.train(c, None, None, None, str(tmp_path / "run"), None, seed=0, target_cameras=(2, 1, 2))
  assert not (tmp_path / "run").exists()


def test_target_camera_ids_become_indices_in_the_adaptations_sorted_cameras():
  assert camera_indices([5, 1, 3, 5], (1, 3, 5)).tolist() == [2, 0, 1, 2]
  with pytest.raises(ValueError, match=r"target camera 4 is not one of the adaptation's cameras \[1, 3, 5\]"):
    camera_indices([1, 4], (1, 3, 5))
  with pytest.raises(ValueError, match=r"target camera 6 is not one"):
    camera_indices([6], (1, 3, 5))


def test_s2_may_have_its_own_localisation_head(tiny_sagan_config):
  """``stm_head_s2`` gives S2 the head it names and leaves S1 with ``stm_head``'s: the parameter
  shapes of each equal those of a model with that head for both, and the losses run with both."""
  c = tiny_sagan_config("sagan")
  c.siamese = False
  shapes = {}
  for head in ("pool", "flatten"):
    c.stm_head, c.stm_head_s2 = head, "same"
    params = SAGAN(c).init_params(jax.random.PRNGKey(0))
    shapes[head] = jax.tree_util.tree_map(lambda a: a.shape, {n: params[n] for n in ("S1", "S2")})
  assert shapes["pool"]["S2"] != shapes["flatten"]["S2"]  # the heads differ in their hidden layer's input
  c.stm_head, c.stm_head_s2 = "pool", "flatten"
  model = SAGAN(c)
  params = model.init_params(jax.random.PRNGKey(0))
  assert jax.tree_util.tree_map(lambda a: a.shape, params["S1"]) == shapes["pool"]["S1"]
  assert jax.tree_util.tree_map(lambda a: a.shape, params["S2"]) == shapes["flatten"]["S2"]
  batch = _batch(jax.random.PRNGKey(1), 4, toy_people)
  generators = {n: params[n] for n in model.generator_names}
  loss, (metrics, _) = model.generator_loss(generators, params, batch, jax.random.PRNGKey(2))
  assert np.isfinite(float(loss)) and np.isfinite(float(metrics["generator/y/scl"]))
  c.stm_head_s2 = "dense"
  with pytest.raises(ValueError, match=r"config.sagan.stm_head_s2='dense': expected one of"):
    SAGAN(c)
