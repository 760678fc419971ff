"""Where the IDE step's time goes: ResNet-50's convolutions one by one, forward and both gradients.

For every distinct convolution of a torchvision ResNet-50 (v1.5: stride on the 3×3) at the given
batch and input size, times three jitted functions after compilation (median of ``--repeats``):
the forward ``lax.conv_general_dilated``, its input gradient and its filter gradient (each a
``jax.vjp`` of the forward, whose unused forward XLA removes). Each row is multiplied by how often
that shape occurs in the network, and the table ends with the totals, so the three columns say
where the training step's convolution time goes.

With ``--impl=both`` each is also timed with the product gradients of ``sagan_jax.cpu`` (the
"ours" columns: products for 1×1 forwards and for every gradient) and both gradients are checked
against XLA's to 1e-4 relative. The last column says which gradients ``cpu.conv`` picks for the
shape: products, or XLA's for narrow-output layers (``k·k·cin > cpu._MAX_EXPANSION·cout``), so
the rows above that limit show what products would have cost there; "xla dw" where the host has
AVX-512 and ``cpu.conv`` takes XLA's filter gradient for a stride-1 k×k layer at this batch
(``cpu.takes_xla_filter_gradient``; the "dw xla" column is then the one its step runs).

``--net sagan_synthetic`` times SA-GAN's convolutions at ``configs/synthetic.py``'s scale instead
(generators, critics, spatial transformers and SiaNet of both directions, read off the networks'
programs). Its rows marked ᵀ are the generators' transposed convolutions: XLA's ``lax.conv_transpose``
against ``cpu.conv_transpose`` (one undilated convolution and a depth-to-space), the form the
generators run when their gradients are products.

The table ends with the stem's 3×3/2 max pool: XLA's gradient (``select_and_scatter``) against
``sagan_jax.cpu.square_max_pool``'s. ``--band_mib`` sets the im2col band budget of ``cpu`` (default
8 MiB; ``--band_mib 1024`` builds each layer's patches whole, which shows what the bands save).

Usage: python -m bench.bench_convs [--batch 8] [--height 256 --width 128] [--repeats 5] [--impl xla|both]
       [--band_mib 8] [--net resnet50|sagan_synthetic]
"""

from __future__ import annotations

import collections
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from bench import _common

flags.DEFINE_integer("batch", 8, "images per batch")
flags.DEFINE_integer("height", 256, "image height")
flags.DEFINE_integer("width", 128, "image width")
flags.DEFINE_integer("repeats", 5, "timed repetitions (median)")
flags.DEFINE_enum("impl", "both", ("xla", "both"), "'xla' (XLA's gradients only) or 'both' (and sagan_jax.cpu's)")
flags.DEFINE_float("band_mib", 8.0, "im2col band budget of sagan_jax.cpu")
flags.DEFINE_enum(
  "net", "resnet50", ("resnet50", "sagan_synthetic"), "whose convolutions: the IDE ResNet-50 or the main job's SA-GAN"
)

_ROOT = os.path.join(os.path.dirname(__file__), "..")

# pad: rows/columns of zeros on each side (None: kernel // 2), or for a transposed convolution the
# ((top, bottom), (left, right)) padding of its dilated input; input_grad: whether the layer's input
# needs a gradient (not for ResNet's stem, whose input is the image); transpose: a transposed
# convolution whose input is dilated by the stride (lax.conv_transpose).
Conv = collections.namedtuple(
  "Conv", "height width cin cout kernel stride pad input_grad transpose", defaults=(None, True, False)
)


def resnet50_convs(batch_h: int, batch_w: int) -> collections.Counter:
  """Counter of Conv(input h, input w, cin, cout, kernel, stride) over torchvision's ResNet-50."""
  convs = collections.Counter()
  h, w = batch_h, batch_w
  convs[Conv(h, w, 3, 64, 7, 2, input_grad=False)] += 1
  h, w = -(-h // 4), -(-w // 4)  # conv1 stride 2, then the stride-2 max pool
  cin = 64
  for stage, blocks in enumerate((3, 4, 6, 3)):
    width = 64 * 2**stage
    for block in range(blocks):
      stride = 2 if stage > 0 and block == 0 else 1
      convs[Conv(h, w, cin, width, 1, 1)] += 1
      convs[Conv(h, w, width, width, 3, stride)] += 1
      if block == 0:
        convs[Conv(h, w, cin, 4 * width, 1, stride)] += 1
      h, w = -(-h // stride), -(-w // stride)
      convs[Conv(h, w, width, 4 * width, 1, 1)] += 1
      cin = 4 * width
  return convs


def sagan_synthetic_convs(batch: int) -> collections.Counter:
  """Counter of SA-GAN's convolutions at configs/synthetic.py's scale, read off the networks' jaxprs."""
  import importlib.util

  from sagan_jax.sagan import SAGAN

  spec = importlib.util.spec_from_file_location("synthetic_config", os.path.join(_ROOT, "configs", "synthetic.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config().sagan
  model = SAGAN(c)  # flax's layers: plain convolutions in the jaxpr
  h, w = c.image_size
  image4, z = jnp.zeros((batch, h, w, 4)), jnp.zeros((batch, c.z_dim))
  networks = {
    "G": (model.generator, (image4,)),
    "S": (model.stm, (image4, z)),
    "D": (model.critic, (image4,)),
    "SiaNet": (model.sianet, (image4[..., :3],)),
  }
  copies = {"G": 2 if c.pixel else 0, "S": 2 if c.spatial else 0, "D": 2, "SiaNet": 1 if model.uses_siamese else 0}
  convs = collections.Counter()
  for name, (net, args) in networks.items():
    if not copies[name]:
      continue
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0), *args)
    for eqn in jax.make_jaxpr(net.apply)(params, *args).jaxpr.eqns:
      if eqn.primitive.name != "conv_general_dilated":
        continue
      x, k = (v.aval.shape for v in eqn.invars[:2])
      dilation = eqn.params["lhs_dilation"]
      if any(d != 1 for d in dilation):
        assert dilation[0] == dilation[1] and k[0] == k[1], eqn
        pads = tuple(eqn.params["padding"])
        convs[Conv(x[1], x[2], x[3], k[3], k[0], dilation[0], pads, transpose=True)] += copies[name]
        continue
      (top, bottom), (left, right) = eqn.params["padding"]
      assert top == bottom == left == right and k[0] == k[1], eqn
      convs[Conv(x[1], x[2], x[3], k[3], k[0], eqn.params["window_strides"][0], top)] += copies[name]
  return convs


def _median(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append(time.perf_counter() - start)
  return statistics.median(samples)


def time_conv(c: Conv, batch: int, repeats: int, impls: tuple[str, ...]):
  from sagan_jax import cpu

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, c.height, c.width, c.cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((c.kernel, c.kernel, c.cin, c.cout)) * 0.05, jnp.float32)
  if c.transpose:
    pad = c.pad
    fns = {
      "xla": lambda x, w, s, p: lax.conv_transpose(x, w, s, p, dimension_numbers=("NHWC", "HWIO", "NHWC")),
      "matmul": cpu.conv_transpose,
    }
  else:
    p = c.kernel // 2 if c.pad is None else c.pad
    pad = ((p, p),) * 2
    # Products whatever cpu.conv would pick, XLA's filter gradient included.
    fns = {"xla": cpu.xla_conv, "matmul": lambda x, w, s, p: cpu._conv(x, w, s, p, False)}
  out_shape = jax.eval_shape(lambda x, w: fns["xla"](x, w, (c.stride, c.stride), pad), x, w).shape
  dy = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
  out = {}
  for impl in impls:
    forward = lambda x, w, fn=fns[impl]: fn(x, w, (c.stride, c.stride), pad)
    grad_x = jax.jit(lambda x, w, dy: jax.vjp(lambda x: forward(x, w), x)[1](dy)[0])
    grad_w = jax.jit(lambda x, w, dy: jax.vjp(lambda w: forward(x, w), w)[1](dy)[0])
    out[impl] = {
      "fwd": _median(jax.jit(forward), (x, w), repeats),
      "dx": _median(grad_x, (x, w, dy), repeats) if c.input_grad else 0.0,
      "dw": _median(grad_w, (x, w, dy), repeats),
      "values": (grad_x(x, w, dy) if c.input_grad else None, grad_w(x, w, dy)),
    }
  if len(impls) == 2:
    for name, ours, ref in zip(("dx", "dw"), out["matmul"]["values"], out["xla"]["values"]):
      if ref is None:
        continue
      err = float(jnp.abs(ours - ref).max() / jnp.abs(ref).max())
      if err > 1e-4:
        raise AssertionError(f"{c}: the matmul {name} differs from XLA's by {err:.2e} of its largest entry")
  return out


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  allocator = _common.apply(args)
  impls = ("xla",) if args.impl == "xla" else ("xla", "matmul")
  from sagan_jax import cpu

  cpu._CHUNK_BYTES = int(args.band_mib * 2**20)  # read at trace time
  if args.net == "resnet50":
    convs = resnet50_convs(args.height, args.width)
    what = f"ResNet-50 convolutions, batch {args.batch}, {args.height}×{args.width}"
  else:
    convs = sagan_synthetic_convs(args.batch)
    what = f"SA-GAN convolutions at configs/synthetic.py's scale (both directions), batch {args.batch}"
  print(f"{what}, float32, ms per call (median of {args.repeats}); {allocator}")
  takes = cpu.takes_xla_filter_gradient(args.batch, (3, 3), (1, 1))
  print(
    f"device: {_common.device_line()}; cpu.conv takes XLA's stride-1 k×k filter gradients at this batch: "
    f"{'yes' if takes else 'no'}"
  )
  print()
  header = "| input h×w | cin→cout | k/s | ×n | fwd xla | dx xla | dw xla |"
  if len(impls) == 2:
    header += " fwd ours | dx ours | dw ours | cpu.conv |"
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  totals = collections.Counter()
  for c, n in sorted(convs.items(), key=lambda item: (-item[0].height, item[0].cin, item[0].kernel)):
    t = time_conv(c, args.batch, args.repeats, impls)
    row = (
      f"| {c.height}×{c.width} | {c.cin}→{c.cout} | {c.kernel}/{c.stride}{'ᵀ' if c.transpose else ''} | {n} | "
      f"{1e3 * t['xla']['fwd']:.1f} | "
      f"{1e3 * t['xla']['dx']:.1f} | {1e3 * t['xla']['dw']:.1f} |"
    )
    for impl in impls:
      for part in ("fwd", "dx", "dw"):
        totals[impl, part] += n * t[impl][part]
    if len(impls) == 2:
      if c.transpose:
        picks = "sub-pixel"  # cpu.conv_transpose: one undilated, stride-1 cpu.conv
      else:
        picks = "xla" if c.kernel**2 * c.cin > cpu._MAX_EXPANSION * c.cout else "products"
      # A transposed layer's sub-pixel convolution is a stride-1 k×k one (k > 1 for its 3×3 kernels).
      if picks != "xla" and cpu.takes_xla_filter_gradient(
        args.batch, (c.kernel,) * 2, (1, 1) if c.transpose else (c.stride,) * 2
      ):
        picks += ", xla dw"
      row += (
        f" {1e3 * t['matmul']['fwd']:.1f} | {1e3 * t['matmul']['dx']:.1f} | {1e3 * t['matmul']['dw']:.1f} | {picks} |"
      )
    print(row, flush=True)
  row = (
    f"| **total × n** | | | | {1e3 * totals['xla', 'fwd']:.0f} | {1e3 * totals['xla', 'dx']:.0f} | "
    f"{1e3 * totals['xla', 'dw']:.0f} |"
  )
  if len(impls) == 2:
    row += (
      f" {1e3 * totals['matmul', 'fwd']:.0f} | {1e3 * totals['matmul', 'dx']:.0f} | "
      f"{1e3 * totals['matmul', 'dw']:.0f} |"
    )
  print(row + (" |" if len(impls) == 2 else ""))
  if args.net == "resnet50":
    print()
    print(max_pool_line(args.batch, args.height, args.width, args.repeats))


def max_pool_line(batch: int, height: int, width: int, repeats: int) -> str:
  """The stem's max pool (after conv1: height/2 × width/2 × 64), gradient only, XLA's and ours."""
  import flax.linen as nn

  from sagan_jax import cpu

  x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, height // 2, width // 2, 64)), jnp.float32)
  pools = {
    "xla": lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))),
    "ours": lambda x: cpu.square_max_pool(x, 3, 2, 1),
  }
  dy = jnp.ones(jax.eval_shape(pools["xla"], x).shape, jnp.float32)
  ms = {
    name: 1e3 * _median(jax.jit(lambda x, dy, f=f: jax.vjp(f, x)[1](dy)[0]), (x, dy), repeats)
    for name, f in pools.items()
  }
  return f"stem max pool 3×3/2 gradient, input {x.shape}: xla {ms['xla']:.1f} ms, ours {ms['ours']:.1f} ms"


if __name__ == "__main__":
  app.run(main)
