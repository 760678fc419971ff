"""SA-GAN training: the model assembly (losses of eqs. 1–7 over the networks), the training state,
the jit-compiled sharded critic/generator steps, and multi-modal translation."""

from sagan_jax.sagan.config import VARIANTS, apply_tiny_scale, apply_variant, sagan_config
from sagan_jax.sagan.model import SAGAN
from sagan_jax.sagan.steps import SAGANState, make_steps, translate

__all__ = [
  "SAGAN",
  "VARIANTS",
  "SAGANState",
  "apply_tiny_scale",
  "apply_variant",
  "make_steps",
  "sagan_config",
  "translate",
]
