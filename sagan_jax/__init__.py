"""sagan_jax: SA-GAN (Spatial-Aware GAN for unsupervised person re-identification) in JAX/Flax.

Public modules:
  geometry: differentiable homography / affine / thin-plate-spline warps (pure functions).
  losses: SA-GAN's losses, eqs. 1–7 (pure functions).
  models, sagan: the networks; SA-GAN's config, model assembly, jitted sharded steps, translate.
  data: TFDS builders (Market-1501, DukeMTMC-reID, PRID2011), the synthetic benchmark, the pipeline.
  reid: ResNet-50/IDE, the torchvision converter, IDE training, CMC/mAP evaluation.
"""

__version__ = "0.1.0"
