"""The default config of ``python -m sagan_jax.masks`` (``--config=this file``; override fields with
``--config.x=...``)."""

from sagan_jax.masks.training import mask_config


def get_config():
  return mask_config()
