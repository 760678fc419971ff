"""SA-GAN's networks (Section III-A, Fig. 2), each a Flax linen module used through init/apply.

generator.ResnetGenerator      G1 (X→Y), G2 (Y→X)
critic.PatchCritic             D1 (judges domain Y), D2 (judges domain X)
stm.SpatialTransformer         S1, S2: localisation network + differentiable warp
spatial_critic.SpatialCritic   D_T: judges transformation parameters
sianet.SiaNet                  SPGAN's Siamese embedding network
"""

from sagan_jax.models.critic import PatchCritic
from sagan_jax.models.generator import ResnetGenerator
from sagan_jax.models.sianet import SiaNet
from sagan_jax.models.spatial_critic import SpatialCritic
from sagan_jax.models.stm import TRANSFORMS, SpatialTransformer

__all__ = ["TRANSFORMS", "PatchCritic", "ResnetGenerator", "SiaNet", "SpatialCritic", "SpatialTransformer"]
