"""sagan_jax: SA-GAN (Spatial-Aware GAN for unsupervised person re-identification) in JAX/Flax.

Public modules:
  geometry: differentiable homography / affine / thin-plate-spline warps (pure functions).
"""

__version__ = "0.1.0"
