"""configs/synthetic.py shrunk for tests: 32×16 images, narrow networks, a few steps of everything.

Also a config file for ``train.py`` (the multi-process test starts real processes with it):

  python train.py --config=tests/tiny_config.py:variant=sagan --config.data.synthetic_dir=DIR --workdir=...
"""

import importlib.util
import os

_SYNTHETIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "synthetic.py")


def get_config(arg=None):
  spec = importlib.util.spec_from_file_location("synthetic_config", _SYNTHETIC)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(arg)
  c.data.synthetic_spec.update(
    height=64,
    width=32,
    train_ids=8,
    test_ids=6,
    num_cameras=2,
    images_per_camera=2,
    distractors=4,
    junk=2,
    seed=3,
    target_views=2,
  )
  s = c.sagan
  s.image_size = (32, 16)
  s.generator_features, s.generator_blocks, s.critic_features, s.critic_layers = 8, 1, 8, 2
  s.stm_features, s.stm_layers, s.stm_hidden, s.spatial_critic_hidden = 8, 2, 16, 16
  s.sianet_widths, s.sianet_embed_dim = (8, 16), 16
  if s.gan_loss == "wgan":  # the CycleGAN variants keep their one discriminator update
    s.n_critic = 2
  c.sagan_train.update(batch_size=8, steps=4, log_every=1, sample_every=2, checkpoint_every=2)
  c.ide.update(
    image_size=(32, 16), width=8, batch_size=8, epochs=2, lr_decay_epochs=(1,), log_every=1, checkpoint_every=4
  )
  c.translate.batch_size = 16
  c.eval.batch_size = 16
  c.eval.translation_report = False  # its reference IDE is one more training; test_experiments_stages turns it on
  c.eval.reference_epochs_factor = 1  # a few images: nothing to fit at length
  return c
