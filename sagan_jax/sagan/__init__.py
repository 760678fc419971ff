"""SA-GAN: the model assembly (losses of eqs. 1–7 over the networks), the training state, the
jit-compiled sharded critic/generator steps, and multi-modal translation. Its trainer,
`sagan_jax.sagan.train`, is imported on its own (it needs the training extras: Orbax, grain)."""

from sagan_jax.sagan.config import VARIANTS, apply_tiny_scale, apply_variant, sagan_config
from sagan_jax.sagan.model import SAGAN
from sagan_jax.sagan.steps import Optimizers, SAGANState, create_state, make_steps, translate

__all__ = [
  "SAGAN",
  "VARIANTS",
  "Optimizers",
  "SAGANState",
  "apply_tiny_scale",
  "apply_variant",
  "create_state",
  "make_steps",
  "sagan_config",
  "translate",
]
