"""sagan_jax.losses against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sagan_jax import losses


def test_wgan_losses_hand_computed():
  real, fake = jnp.array([1.0, 3.0]), jnp.array([0.0, 2.0])
  assert float(losses.wgan_critic_loss(real, fake)) == pytest.approx(1.0 - 2.0)
  assert float(losses.wgan_generator_loss(jnp.array([1.0, 2.0, 3.0]))) == pytest.approx(-2.0)


def test_gradient_penalty_of_a_linear_critic():
  # D(x) = <w, x> has gradient w everywhere: the penalty is (|w| - 1)² = (5 - 1)² for w = (3, 4).
  w = jnp.array([3.0, 4.0])
  critic = lambda x: x @ w
  real = jax.random.normal(jax.random.key(0), (16, 2))
  fake = jax.random.normal(jax.random.key(1), (16, 2))
  assert float(losses.gradient_penalty(critic, real, fake, jax.random.key(2))) == pytest.approx(16.0, rel=1e-5)
  # A 1-Lipschitz linear critic pays nothing; images work the same way as vectors.
  unit = lambda x: jnp.sum(x * 0.5, axis=(1, 2, 3))  # |∇| = 0.5 · sqrt(4 elements) = 1
  imgs = jax.random.normal(jax.random.key(3), (4, 2, 2, 1))
  assert float(losses.gradient_penalty(unit, imgs, -imgs, jax.random.key(4))) == pytest.approx(0.0, abs=1e-8)


def test_gradient_penalty_is_per_sample():
  # D(x) = |x|² has gradient 2x: at interpolates e·r + (1 - e)·f the norm depends on each sample's e.
  critic = lambda x: jnp.sum(x**2, axis=-1)
  real = jnp.array([[1.0, 0.0], [0.0, 2.0]])
  fake = jnp.zeros((2, 2))
  key = jax.random.key(5)
  eps = jax.random.uniform(key, (2, 1))
  norms = 2 * jnp.linalg.norm(eps * real, axis=-1)
  expected = jnp.mean((norms - 1.0) ** 2)
  assert float(losses.gradient_penalty(critic, real, fake, key)) == pytest.approx(float(expected), rel=1e-5)


def test_weight_clipping_transform():
  tx = optax.chain(optax.sgd(1.0), losses.clip_params(0.01))
  params = {"a": jnp.array([0.005, -0.02, 0.0])}
  grads = {"a": jnp.array([-0.01, 0.0, 0.003])}  # sgd: updates = -grads
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(optax.apply_updates(params, updates)["a"], [0.01, -0.01, -0.003], atol=1e-7)


def test_pixel_cycle_loss_with_and_without_validity():
  x = jnp.zeros((1, 2, 2, 3))
  rec = x.at[0, 0, 0].set(0.6).at[0, 1, 1].set(-0.3)
  assert float(losses.pixel_cycle_loss(x, rec)) == pytest.approx((3 * 0.6 + 3 * 0.3) / 12)
  valid = jnp.array([1.0, 0.0, 0.0, 0.0]).reshape(1, 2, 2, 1)  # only the first pixel counts
  assert float(losses.pixel_cycle_loss(x, rec, valid)) == pytest.approx(0.6, rel=1e-5)


def test_spatial_and_disentangled_cycle_losses():
  a = jnp.eye(3)[None].repeat(2, 0)
  b = a.at[0, 0, 2].set(0.9)
  assert float(losses.spatial_cycle_loss(a, a)) == 0.0
  assert float(losses.spatial_cycle_loss(a, b)) == pytest.approx(0.9 / 18)
  assert float(losses.disentangled_cycle_loss(jnp.array(0.5), jnp.array(0.2), 10.0)) == pytest.approx(2.5)


def test_mask_identity_loss_counts_only_the_person():
  translated = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0].set(1.0).at[0, 1, 1].set(5.0)
  spatial = jnp.zeros((1, 2, 2, 3))
  mask = jnp.array([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)  # pixel (1, 1) is background
  # |diff| summed over the 2 masked pixels and 3 channels: 3 · 1.0, over 2 pixels × 3 channels.
  assert float(losses.mask_identity_loss(translated, spatial, mask)) == pytest.approx(0.5, rel=1e-5)
  assert float(losses.identity_mapping_loss(translated, spatial)) == pytest.approx((3 + 15) / 12)


def test_background_identity_loss_counts_only_the_background_and_completes_eq5():
  translated = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0].set(1.0).at[0, 1, 1].set(5.0)
  spatial = jnp.zeros((1, 2, 2, 3))
  mask = jnp.array([1.0, 1.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
  # Background pixels (1, 0) and (1, 1): |diff| 3 · 5.0 over 2 pixels × 3 channels.
  assert float(losses.background_identity_loss(translated, spatial, mask)) == pytest.approx(2.5, rel=1e-5)
  # With a soft mask the two terms, each times its area, add up to the whole frame's L1.
  soft = jnp.array([0.9, 0.3, 0.5, 0.0]).reshape(1, 2, 2, 1)
  rng = np.random.default_rng(0)
  t, x = (jnp.asarray(rng.uniform(-1, 1, (1, 2, 2, 3)), jnp.float32) for _ in range(2))
  person = float(losses.mask_identity_loss(t, x, soft)) * float(soft.sum()) * 3
  rest = float(losses.background_identity_loss(t, x, soft)) * float((1 - soft).sum()) * 3
  assert person + rest == pytest.approx(float(jnp.abs(t - x).sum()), rel=1e-5)
  assert float(losses.background_identity_loss(t, x, jnp.ones_like(soft))) == 0.0  # no background


def test_contrastive_loss_hand_computed():
  a = jnp.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
  b = jnp.array([[3.0, 4.0], [0.3, 0.4], [3.0, 0.0]])  # distances 5, 0.5, 3
  positive = jnp.array([1, 0, 0])
  # positive: d² = 25; negative within the margin: (2 - 0.5)² = 2.25; beyond the margin: 0.
  assert float(losses.contrastive_loss(a, b, positive, margin=2.0)) == pytest.approx((25 + 2.25 + 0) / 3, rel=1e-5)
  g = jax.grad(lambda e: losses.contrastive_loss(e, e, jnp.array([1.0]), 2.0))(jnp.ones((1, 4)))
  assert bool(jnp.isfinite(g).all())  # identical positive pairs have a finite gradient


def test_generator_objective_weights():
  total = losses.generator_objective(jnp.array(1.0), jnp.array(2.0), jnp.array(3.0), jnp.array(4.0), 10.0, 5.0, 2.0)
  assert float(total) == pytest.approx(1 + 20 + 15 + 8)


def test_lsgan_losses_by_hand():
  real, fake = jnp.array([1.0, 0.0]), jnp.array([0.0, 2.0])
  assert float(losses.lsgan_critic_loss(real, fake)) == pytest.approx(0.5 * ((0 + 1) / 2 + (0 + 4) / 2))
  assert float(losses.lsgan_generator_loss(fake)) == pytest.approx((1 + 1) / 2)


def test_history_pool_fills_then_swaps_half_the_time():
  pool, count = jnp.zeros((4, 1)), jnp.zeros((), jnp.int32)
  shown, pool, count = losses.query_history_pool(pool, count, jnp.array([[1.0], [2.0], [3.0]]), jax.random.key(0))
  assert shown.ravel().tolist() == [1.0, 2.0, 3.0] and pool.ravel().tolist() == [1.0, 2.0, 3.0, 0.0] and int(count) == 3
  swapped = 0
  for seed in range(40):
    full, n = jnp.array([[1.0], [2.0], [3.0], [4.0]]), jnp.array(4)
    new = jnp.array([[10.0], [20.0]])
    s, p, n2 = losses.query_history_pool(full, n, new, jax.random.key(seed))
    s, p = np.asarray(s).ravel(), np.asarray(p).ravel()
    # Nothing is lost or invented: what was shown plus what is kept is what was there plus what came.
    assert sorted(s.tolist() + p.tolist()) == sorted([1.0, 2.0, 3.0, 4.0, 10.0, 20.0]) and int(n2) == 4
    swapped += int(np.sum(s < 10))
  assert 25 <= swapped <= 55  # about half of the 80 fakes were swapped for a stored one


def test_mode_seeking_loss_hand_computed():
  out = jnp.array([0.0, 0.5])
  codes = jnp.array([1.0, 2.0])
  assert float(losses.mode_seeking_loss(out, codes, eps=0.5)) == pytest.approx((1.0 / 0.5 + 2.0 / 1.0) / 2)


def test_feature_identity_loss_hand_computed():
  f = jnp.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
  anchor = jnp.array([[5.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])  # same direction, orthogonal, opposite
  assert float(losses.feature_identity_loss(f, anchor)) == pytest.approx((0.0 + 1.0 + 2.0) / 3)
  assert float(losses.feature_identity_loss(anchor, anchor)) == pytest.approx(0.0, abs=1e-7)
  # A zero feature vector gives a finite value (cos 0), not NaN.
  assert float(losses.feature_identity_loss(jnp.zeros((1, 2)), anchor[:1])) == pytest.approx(1.0)
