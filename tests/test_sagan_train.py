"""The SA-GAN trainer's optimisers: CycleGAN as published (one D update per G update, its pool, its decay)."""

import jax
import jax.numpy as jnp
import numpy as np

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
