"""The SA-GAN trainer's optimisers: CycleGAN as published (one D update per G update, its pool, its decay)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sagan_jax.errors import ConfigError
from sagan_jax.sagan import SAGAN
from sagan_jax.sagan import steps as sagan_steps
from sagan_jax.sagan import train as sagan_train


def test_cyclegan_variant_is_cyclegan_and_steps_d_once_per_g_with_the_pool(tiny_sagan_config):
  c = tiny_sagan_config("cyclegan")
  assert (c.gan_loss, c.lipschitz, c.n_critic, c.history_pool, c.critic_norm) == ("lsgan", "none", 1, 50, "instance")
  assert (c.learning_rate, c.adam_b1, c.adam_b2, c.lr_schedule) == (2e-4, 0.5, 0.999, "linear_decay")
  assert not c.generator_residual and c.generator_pointwise_features == 0
  model, tx = SAGAN(c), sagan_train.optimizers(c, 4)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
  state = sagan_steps.create_state(model, tx, 0, mesh)
  assert int(state.pools["D1"]["count"]) == 0 and state.pools["D1"]["images"].shape == (50, 32, 16, 4)
  # Without a pool the state keeps the layout earlier checkpoints were written in.
  plain_config = tiny_sagan_config("sagan")
  plain = sagan_steps.create_state(SAGAN(plain_config), sagan_train.optimizers(plain_config, 4), 0)
  assert plain.pools == {} and set(plain.opt_state) == {"generator", "critic", "sianet"}
  critic_step, generator_step = sagan_steps.make_steps(model, tx, mesh)
  rng = np.random.default_rng(0)
  batch = lambda: {
    k: jnp.asarray(rng.uniform(-1, 1, (2, 32, 16, 3 if k in "xy" else 1)), jnp.float32)
    for k in ("x", "x_mask", "y", "y_mask")
  }
  for _ in range(3):  # the stage runs n_critic = 1 critic step per generator step
    for _ in range(c.n_critic):
      state, critic_metrics = critic_step(state, batch())
    state, _ = generator_step(state, batch())
  assert int(state.critic_steps) == int(state.step) == 3
  assert int(state.pools["D1"]["count"]) == 6 and int(state.pools["D2"]["count"]) == 6
  assert set(critic_metrics) == {"critic/D1/lsgan", "critic/D2/lsgan", "critic/loss"}
  stored = np.asarray(state.pools["D1"]["images"])
  assert np.all(np.abs(stored[:6]).sum(axis=(1, 2, 3)) > 0) and not np.any(stored[6:])
  np.testing.assert_array_equal(stored[:6, ..., 3], 1.0)  # RGB-only CycleGAN: the mask channel is ones


def test_cyclegan_learning_rate_decays_linearly_over_the_second_half(tiny_sagan_config):
  tx = sagan_train.optimizers(tiny_sagan_config("cyclegan"), 10).generator
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  sizes = []
  for _ in range(10):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    sizes.append(-float(updates["w"]))  # Adam's first step of a constant gradient is the rate itself
  np.testing.assert_allclose(sizes[:6], 2e-4, rtol=1e-3)
  np.testing.assert_allclose(sizes[6:], [2e-4 * (1 - k / 5) for k in range(1, 5)], rtol=1e-3)


def test_the_generator_moving_average_follows_each_generator_update_and_translates(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.generator_ema = 0.75
  model, tx = SAGAN(c), sagan_train.optimizers(c, 4)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
  state = sagan_steps.create_state(model, tx, 0, mesh)
  leaves = lambda tree: [np.asarray(v) for v in jax.tree.leaves(tree)]
  average = leaves({k: state.params[k] for k in model.generator_names})  # starts at the initial weights
  assert all(np.array_equal(a, b) for a, b in zip(leaves(state.opt_state[sagan_steps.EMA_KEY]), average, strict=True))
  critic_step, generator_step = sagan_steps.make_steps(model, tx, mesh)
  rng = np.random.default_rng(0)
  batch = lambda: {
    k: jnp.asarray(rng.uniform(-1, 1, (2, 32, 16, 3 if k in "xy" else 1)), jnp.float32)
    for k in ("x", "x_mask", "y", "y_mask")
  }
  for _ in range(3):
    state, _ = critic_step(state, batch())
    critic_before = leaves(state.params["D1"])
    state, _ = generator_step(state, batch())
    weights = leaves({k: state.params[k] for k in model.generator_names})
    average = [0.75 * a + 0.25 * w for a, w in zip(average, weights)]
    # Critic updates leave it alone.
    assert all(np.array_equal(a, b) for a, b in zip(leaves(state.params["D1"]), critic_before, strict=True))
  for got, want in zip(leaves(state.opt_state[sagan_steps.EMA_KEY]), average, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert max(np.abs(a - w).max() for a, w in zip(average, weights)) > 1e-5  # not simply the last weights
  translating = state.translation_params
  same = lambda a, b: all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b), strict=True))
  assert same(translating["G1"], state.opt_state[sagan_steps.EMA_KEY]["G1"])
  assert same(translating["D1"], state.params["D1"])
  assert not same(translating["G1"], state.params["G1"])
  # Off (the default): no average, the checkpoint layout of earlier runs, the last weights translate.
  plain_config = tiny_sagan_config("sagan")
  plain = sagan_steps.create_state(SAGAN(plain_config), sagan_train.optimizers(plain_config, 4), 0)
  assert sagan_steps.EMA_KEY not in plain.opt_state and plain.translation_params == plain.params


def test_a_generator_average_decay_outside_0_to_1_is_refused(tiny_sagan_config):
  c = tiny_sagan_config("sagan")
  c.generator_ema = 1.0
  with pytest.raises(ConfigError, match=r"config.sagan.generator_ema=1.0: expected a decay in \[0, 1\)"):
    SAGAN(c)


@pytest.mark.parametrize("n_critic", [1, 5])
def test_the_linear_decay_reaches_zero_at_the_last_generator_update_for_every_network(tiny_sagan_config, n_critic):
  # Adam's update for a constant gradient is exactly the learning rate (m̂ / √v̂ = 1, ε aside), so
  # the k-th update reads the schedule at k. Six generator updates: constant for three, then to 0.
  c = tiny_sagan_config("sagan")
  c.lr_schedule, c.n_critic, c.learning_rate = "linear_decay", n_critic, 1e-3
  tx = sagan_train.optimizers(c, 6)

  def rates(optimizer, updates):
    params = {"w": jnp.zeros(())}
    state, out = optimizer.init(params), []
    for _ in range(updates):
      step, state = optimizer.update({"w": jnp.ones(())}, state, params)
      out.append(-float(step["w"]))
    return np.asarray(out)

  expected = 1e-3 * np.array([1, 1, 1, 1, 2 / 3, 1 / 3])
  np.testing.assert_allclose(rates(tx.generator, 6), expected, rtol=1e-5)
  # The critics' n_critic updates per generator update: the same curve, n_critic times finer.
  critic = rates(tx.critic, 6 * n_critic)
  np.testing.assert_allclose(critic[::n_critic], expected, rtol=1e-5)
  assert critic[-1] > 0 and critic[-1] < 1e-3 / (3 * n_critic) + 1e-9
