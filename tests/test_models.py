"""Shapes of every SA-GAN network, and the spatial transformer's identity start."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax import cpu
from sagan_jax.models import PatchCritic, ResnetGenerator, SiaNet, SpatialCritic, SpatialTransformer, stm

B, H, W = 2, 32, 16


def _images(channels=4, key=0):
  return jax.random.uniform(jax.random.key(key), (B, H, W, channels)) * 2 - 1


def test_generator_shapes_and_range():
  g = ResnetGenerator(features=8, num_blocks=2)
  x = _images()
  params = g.init(jax.random.key(1), x)
  out = g.apply(params, x)
  assert out.shape == (B, H, W, 3) and out.dtype == jnp.float32
  assert float(jnp.abs(out).max()) <= 1.0
  # In conv, two downsamplings, two residual blocks, two upsamplings, out conv.
  assert len(params["params"]) == 1 + 2 + 2 + 2 + 1
  with pytest.raises(ValueError, match="divisible by 4"):
    g.apply(params, jnp.zeros((1, 30, 16, 4)))


def test_generator_is_the_same_function_with_flax_and_cpu_layers():
  """With sagan_jax.cpu's layers the upsampling layers run as undilated convolutions: same parameter
  tree and initial values, same outputs and gradients up to float32 rounding (1e-4 of the largest)."""
  x = _images()
  fast = cpu.layers()
  nets = {
    "flax": ResnetGenerator(features=8, num_blocks=1),
    "cpu": ResnetGenerator(features=8, num_blocks=1, conv=fast.conv, conv_transpose=fast.conv_transpose),
  }
  params = {name: g.init(jax.random.key(1), x) for name, g in nets.items()}
  assert jax.tree.structure(params["flax"]) == jax.tree.structure(params["cpu"])
  assert {k for k in params["flax"]["params"] if k.startswith("ConvTranspose")} == {
    "ConvTranspose_0",
    "ConvTranspose_1",
  }
  for a, b in zip(jax.tree.leaves(params["flax"]), jax.tree.leaves(params["cpu"])):
    np.testing.assert_array_equal(a, b)
  loss = lambda name: jax.jit(jax.value_and_grad(lambda p: jnp.sum(nets[name].apply(p, x) ** 2)))(params["flax"])
  (value_flax, grads_flax), (value_ours, grads_ours) = loss("flax"), loss("cpu")
  np.testing.assert_allclose(value_ours, value_flax, rtol=1e-5)
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_flax))
  for a, b in zip(jax.tree.leaves(grads_ours), jax.tree.leaves(grads_flax)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)
  forward = lambda name: str(jax.make_jaxpr(lambda p: nets[name].apply(p, x))(params["flax"]))
  assert "lhs_dilation=(2, 2)" in forward("flax") and "lhs_dilation=(2, 2)" not in forward("cpu")


def test_generator_bfloat16_compute_keeps_float32_params():
  params = ResnetGenerator(features=8, num_blocks=1).init(jax.random.key(1), _images())
  out = ResnetGenerator(features=8, num_blocks=1, dtype=jnp.bfloat16).apply(params, _images())
  f32 = ResnetGenerator(features=8, num_blocks=1).apply(params, _images())
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  assert out.dtype == jnp.float32 and float(jnp.abs(out - f32).max()) < 0.1


def _randomised(params, key):
  """Every weight moved off its initial value, so the zero-initialised output layers act."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(key), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize(
  "person_path, background_path",
  [("full", "full"), ("pointwise", "full"), ("full", "pointwise"), ("pointwise", "pointwise")],
)
def test_a_pointwise_path_makes_each_pixel_of_its_region_a_function_of_its_own_colour(person_path, background_path):
  """In a region whose path is "pointwise" an output pixel is tanh(atanh(rgb) + f(rgb)) of that pixel
  alone: repainting every pixel of the other region leaves it exactly as it was, and it equals the
  colour path's three 1×1 layers computed here by hand. A "full" region's pixels still see their
  neighbourhood."""
  g = ResnetGenerator(
    features=8,
    num_blocks=1,
    residual=True,
    pointwise_features=4,
    person_path=person_path,
    background_path=background_path,
  )
  rgb = _images(3)
  person = jnp.zeros((B, H, W, 1)).at[:, 8:24, 4:12].set(1.0)
  x = jnp.concatenate([rgb, person], -1)
  params = _randomised(g.init(jax.random.key(1), x), 2)
  out = g.apply(params, x)
  inside = np.asarray(person[..., 0] > 0)
  p = params["params"]
  conv1 = lambda v, name: v @ p[name]["kernel"][0, 0] + p[name]["bias"]
  names = sorted(k for k in p if k.startswith("Conv_"))[-3:]
  h = jax.nn.leaky_relu(conv1(rgb, names[0]), 0.2)
  h = jax.nn.leaky_relu(conv1(h, names[1]), 0.2)
  colour_only = np.asarray(jnp.tanh(jnp.arctanh(jnp.clip(rgb, -0.999, 0.999)) + conv1(h, names[2])))
  for region, path, where, repaint in (
    ("person", person_path, inside, person == 0),
    ("background", background_path, ~inside, person > 0),
  ):
    moved = jnp.concatenate([jnp.where(repaint, -rgb, rgb), person], -1)  # the other region repainted
    change = float(jnp.abs(g.apply(params, moved) - out)[where].max())
    if path == "full":
      assert change > 0.01, region
      assert float(np.abs(np.asarray(out) - colour_only)[where].max()) > 0.01, region
    else:
      assert change == 0.0, region
      np.testing.assert_allclose(np.asarray(out)[where], colour_only[where], atol=1e-5, err_msg=region)


@pytest.mark.parametrize("region", ["person", "background"])
def test_a_colour_map_region_is_one_affine_map_of_each_images_atanh_colours(region):
  """Where a region's path is "colour_map", output = tanh((I + M) atanh(rgb) + c) with one M and c per
  image, read by the region's zero-initialised dense layer: computed here by hand from that layer's
  output, it matches every pixel of the region, the two images' maps differ, and the other region
  ("full", painted by the main path) is not that map. At initialisation G is the identity."""
  g = ResnetGenerator(features=8, num_blocks=1, residual=True, pointwise_features=4, **{f"{region}_path": "colour_map"})
  rgb = _images(3)
  person = jnp.zeros((B, H, W, 1)).at[:, 8:24, 4:12].set(1.0)
  x = jnp.concatenate([rgb, person], -1)
  params = g.init(jax.random.key(1), x)
  np.testing.assert_allclose(np.asarray(g.apply(params, x)), np.clip(np.asarray(rgb), -0.999, 0.999), atol=1e-6)
  params = _randomised(params, 2)
  name = f"colour_map_{region}"
  out, state = g.apply(params, x, capture_intermediates=lambda m, _: m.name == name)
  theta = np.asarray(state["intermediates"][name]["__call__"][0], np.float64)
  assert theta.shape == (B, 12)
  assert np.abs(theta[0] - theta[1]).max() > 0.01  # one map per image
  logits = np.arctanh(np.clip(np.asarray(rgb, np.float64), -0.999, 0.999))
  inside = np.asarray(person[..., 0] > 0)
  where = inside if region == "person" else ~inside
  for i in range(B):
    by_hand = np.tanh(logits[i] @ (np.eye(3) + theta[i, :9].reshape(3, 3).T) + theta[i, 9:])
    np.testing.assert_allclose(np.asarray(out[i])[where[i]], by_hand[where[i]], atol=1e-5)
    assert np.abs(np.asarray(out[i]) - by_hand)[~where[i]].max() > 0.01  # the "full" region is painted


@pytest.mark.parametrize("region", ["person", "background"])
def test_a_colour_map_needs_a_residual_generator_and_a_mask(region):
  x = _images(4)
  for residual, channels in ((False, 4), (True, 3)):
    g = ResnetGenerator(features=8, num_blocks=1, residual=residual, **{f"{region}_path": "colour_map"})
    with pytest.raises(ValueError, match=f"{region}_path='colour_map' needs residual=True and a mask channel"):
      g.init(jax.random.key(0), x[..., :channels])


@pytest.mark.parametrize("region", ["person", "background"])
def test_a_pointwise_path_needs_a_residual_generator_a_colour_path_and_a_mask(region):
  x = _images(4)
  for kwargs, channels in (
    ({"residual": False, "pointwise_features": 4}, 4),
    ({"residual": True, "pointwise_features": 0}, 4),
    ({"residual": True, "pointwise_features": 4}, 3),
  ):
    g = ResnetGenerator(features=8, num_blocks=1, **{f"{region}_path": "pointwise"}, **kwargs)
    with pytest.raises(ValueError, match=f"{region}_path='pointwise' needs residual=True"):
      g.init(jax.random.key(0), x[..., :channels])
  with pytest.raises(ValueError, match=f"{region}_path must be one of"):
    ResnetGenerator(features=8, num_blocks=1, **{f"{region}_path": "person"}).init(jax.random.key(0), x)


@pytest.mark.parametrize("norm", ["layer", "instance", "none"])
def test_patch_critic_shapes_and_per_sample_independence(norm):
  d = PatchCritic(features=8, num_layers=2, norm=norm)
  x = _images()
  params = d.init(jax.random.key(2), x)
  scores = d.apply(params, x)
  # 32×16 → 4×4 convs with padding 1: stride 2 (16×8), stride 2 (8×4), stride 1 (7×3), stride 1 (6×2).
  assert scores.shape == (B, 6, 2)
  # No batch statistics: a sample's scores do not depend on the rest of the batch.
  alone = d.apply(params, x[:1])
  np.testing.assert_allclose(alone, scores[:1], atol=1e-5)


def test_patch_critic_paper_scale_shape():
  d = PatchCritic()  # 64 features, 3 layers: the 70×70 PatchGAN
  shape = jax.eval_shape(lambda x: d.init_with_output(jax.random.key(0), x)[0], jnp.zeros((1, 256, 128, 4))).shape
  assert shape == (1, 30, 14)


@pytest.mark.parametrize("transform,num_params", [("homography", 8), ("affine", 6), ("tps", 30)])
def test_spatial_transformer_starts_at_the_identity(transform, num_params):
  s = SpatialTransformer(transform=transform, features=8, num_layers=3, hidden=16)
  x, z = _images(), jax.random.normal(jax.random.key(3), (B, 4))
  params = s.init(jax.random.key(4), x, z)
  p = s.apply(params, x, z)
  assert p.shape == (B, num_params) and p.dtype == jnp.float32
  np.testing.assert_array_equal(p, jnp.zeros_like(p))
  np.testing.assert_array_equal(stm.apply_transform(x, p, transform, padding="border"), x)
  np.testing.assert_array_equal(stm.apply_transform(x, p, transform, padding="zeros"), x)


def test_spatial_transformer_output_depends_on_the_spatial_code():
  s = SpatialTransformer(features=8, num_layers=3, hidden=16)
  x = _images()
  params = s.init(jax.random.key(4), x, jnp.zeros((B, 4)))
  # Move the zero-initialised output layer off zero, as training does.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(5), p.shape), params)
  p1 = s.apply(params, x, jax.random.normal(jax.random.key(6), (B, 4)))
  p2 = s.apply(params, x, jax.random.normal(jax.random.key(7), (B, 4)))
  assert float(jnp.abs(p1 - p2).max()) > 1e-3


def test_transform_helpers():
  p = 0.2 * jax.random.normal(jax.random.key(8), (B, 8))
  m = stm.transform_matrices(p, "homography")
  np.testing.assert_allclose(
    m @ stm.transform_matrices(stm.invert_params(p, "homography"), "homography"),
    jnp.broadcast_to(jnp.eye(3), (B, 3, 3)),
    atol=1e-5,
  )
  with pytest.raises(ValueError, match="transform must be one of"):
    stm.num_params("projective")
  with pytest.raises(ValueError, match="matrices"):
    stm.transform_matrices(jnp.zeros((B, 30)), "tps")


def test_spatial_critic_and_sianet_shapes():
  dt = SpatialCritic(hidden=16)
  p = jax.random.normal(jax.random.key(9), (B, 8))
  assert dt.apply(dt.init(jax.random.key(10), p), p).shape == (B,)
  sia = SiaNet(widths=(8, 16), embed_dim=12)
  x = _images(3)
  e = sia.apply(sia.init(jax.random.key(11), x), x)
  assert e.shape == (B, 12)
  np.testing.assert_allclose(jnp.linalg.norm(e, axis=-1), 1.0, rtol=1e-5)
  # SPGAN's four stages on a paper-scale crop.
  shape = jax.eval_shape(
    lambda x: SiaNet().init_with_output(jax.random.key(0), x)[0], jnp.zeros((1, 256, 128, 3))
  ).shape
  assert shape == (1, 128)
