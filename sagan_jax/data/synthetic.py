"""The synthetic two-domain re-ID benchmark: procedurally drawn pedestrians seen by two camera networks.

    python -m sagan_jax.data.synthetic --out DIR [--height 128 --width 64 --train_ids 100 --test_ids 100]

writes ``DIR/source`` and ``DIR/target``, each a Market-1501-layout manual directory
(``Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query}``, ``PPPP_cXsY_FFFFFF_NN.jpg``,
pid 0000 distractors and -1 junk boxes in the gallery) with a ground-truth binary mask per image
under ``masks/`` (the layout `sagan_jax.data.builders.Market1501` reads with ``config="masked"``), and
``DIR/benchmark.json`` recording what separates the domains.

What identifies a person: top and bottom colours, a top pattern (plain, stripes, checks) and its
second colour, sleeve and leg length, skirt, body height and width, head size, skin tone, hair,
hat, backpack, handbag and their colours. What varies between images of one person: front or back
view, mirroring, arm and leg swing, position and scale jitter, lighting and noise. Each camera has
its own background (a wall, a floor, scenery blocks) and lighting.

The two domains share the renderer and differ like two camera networks:
  * space: the source is seen from a low viewpoint (the person frontal, feet to head upright); the
    target's cameras from higher ones, each a perspective homography ``H`` (vertical keystone: head
    enlarged, legs foreshortened, plus a vertical rescale and shift that keeps the person in the
    frame). The target cameras look down at ``target_views`` tilts spread around ``tilt``
    (``tilt ± tilt_spread``; the camera named ``cN`` takes view (N − 1) mod ``target_views``), so a
    source image has a *set* of true translations, one per view. ``H`` maps target-image
    coordinates to the source-frame coordinates they show, in the normalised convention of
    `sagan_jax.geometry` (x first, [-1, 1], ±1 at corner pixel centres, output → input), so
    ``warp(source_image, H)`` renders a source person as that target camera would see them: a
    T_xy an ideal S1 may predict. (Defined in normalised coordinates, it holds at any image size up
    to the sub-pixel difference of the corner-centre convention.) The *central* view is the tilt
    ``tilt`` itself. With ``source_high_cameras`` = k, the last k source cameras are mounted at the
    central view's height (their people seen through its ``H``): a source seen from two heights,
    which the paper adapts as two viewpoint groups (``benchmark.json`` records each camera's height).
  * pixels: the target's colours pass through a channel-mixing matrix and gamma (a strong cast that
    also compresses the red–green axis the source palette relies on), its cameras have stronger
    individual casts, and its backgrounds come from another palette.
Identities are disjoint between domains and between train and test, as in real cross-dataset
re-ID. Everything is deterministic in ``seed``.

Paired ground truth (``DIR/paired/``): for ``paired_images`` source *training* images (the GAN's
own inputs: the in-sample set) and ``heldout_paired_images`` source *test* images (never a GAN
input: the held-out set), spread evenly over their splits and listed in ``benchmark.json``, the
same rendering (person, pose, background, lighting) warped whole into each target view with the
edge pixels repeated (what an ideal S1 does with border padding) and passed through the target
colour pipeline, without sensor noise: ``paired/<stem>_v<k>.png``, an RGBA PNG whose alpha is the
warped person mask. No split reads that folder: it only scores translations (`sagan_jax.fidelity`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence

import numpy as np
from absl import app, flags, logging
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from sagan_jax import cli
from sagan_jax.data import layouts
from sagan_jax.errors import ConfigError

DOMAINS = ("source", "target")
SUPERSAMPLE = 2

# The target camera network's view of a source-frame person (output → input, normalised): a
# vertical keystone K (x and y divided by 1 + tilt·y) followed by a vertical rescale and shift A
# that keep the head and the feet inside the frame.
DEFAULT_TILT = -0.3
# Target colour cast: mixes channels (red and green pulled together), then gamma.
TARGET_COLOUR_MATRIX = ((0.55, 0.45, 0.10), (0.40, 0.55, 0.15), (0.05, 0.25, 0.90))
TARGET_GAMMA = 0.75

_PALETTE = np.array(
  [
    (200, 30, 30),
    (30, 150, 40),
    (30, 60, 200),
    (230, 200, 40),
    (240, 240, 240),
    (25, 25, 25),
    (130, 130, 130),
    (120, 40, 160),
    (240, 130, 30),
    (30, 180, 190),
    (150, 90, 40),
    (240, 150, 190),
    (20, 40, 90),
    (100, 120, 30),
    (170, 20, 80),
    (200, 180, 140),
  ],
  np.float32,
)
_SKIN = np.array([(235, 200, 170), (205, 160, 120), (160, 110, 75), (100, 65, 40)], np.float32)
_HAIR = np.array([(20, 15, 10), (90, 60, 30), (170, 140, 80), (120, 120, 120)], np.float32)
_BACKGROUNDS = {
  "source": np.array(
    [(120, 120, 115), (150, 140, 120), (95, 105, 120), (135, 150, 135), (110, 95, 85), (160, 160, 160)], np.float32
  ),
  "target": np.array(
    [(70, 80, 70), (90, 85, 100), (60, 70, 90), (100, 95, 80), (80, 60, 60), (75, 90, 95)], np.float32
  ),
}


DEFAULT_TILT_SPREAD = 0.15
DEFAULT_TARGET_VIEWS = 3


def view_homography(tilt: float = DEFAULT_TILT) -> np.ndarray:
  """``H_view`` (float64, det 1): target-image coordinates → source-frame coordinates, normalised."""
  keystone = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, tilt, 1.0]])
  # Choose the vertical rescale a and shift b so that y_out = ±1 map to y_in = ∓/± 0.99.
  lo, hi = -1.0 / (1.0 - tilt), 1.0 / (1.0 + tilt)  # y_in of the keystone at y_out = -1, +1
  a = 1.98 / (hi - lo)
  b = -0.99 - a * lo
  h = np.array([[1.0, 0, 0], [0, a, b], [0, 0, 1.0]]) @ keystone
  return h / np.cbrt(np.linalg.det(h))


@dataclasses.dataclass(frozen=True)
class Identity:
  top: np.ndarray
  top2: np.ndarray
  pattern: str  # "plain", "hstripes", "vstripes", "checks"
  bottom: np.ndarray
  skin: np.ndarray
  hair: np.ndarray
  long_sleeves: bool
  shorts: bool
  skirt: bool
  height: float  # fraction of the frame height
  width: float  # shoulder width, fraction of the frame width
  head: float  # head radius, fraction of the body height
  hat: np.ndarray | None
  backpack: np.ndarray | None
  handbag: np.ndarray | None


def random_identity(rng: np.random.Generator) -> Identity:
  def colour():
    return _PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 12, 3)

  top = colour()
  return Identity(
    top=top,
    top2=colour(),
    pattern=str(rng.choice(["plain", "plain", "hstripes", "vstripes", "checks"])),
    bottom=colour(),
    skin=_SKIN[rng.integers(len(_SKIN))],
    hair=_HAIR[rng.integers(len(_HAIR))],
    long_sleeves=bool(rng.random() < 0.6),
    shorts=bool(rng.random() < 0.25),
    skirt=bool(rng.random() < 0.15),
    height=float(rng.uniform(0.78, 0.92)),
    width=float(rng.uniform(0.36, 0.52)),
    head=float(rng.uniform(0.06, 0.08)),
    hat=colour() if rng.random() < 0.2 else None,
    backpack=colour() if rng.random() < 0.3 else None,
    handbag=colour() if rng.random() < 0.2 else None,
  )


@dataclasses.dataclass(frozen=True)
class Camera:
  background: np.ndarray
  floor: np.ndarray
  blocks: tuple  # scenery rectangles (x0, y0, x1, y1, colour) in normalised units
  gain: np.ndarray  # per-channel lighting


def random_camera(rng: np.random.Generator, domain: str) -> Camera:
  palette = _BACKGROUNDS[domain]
  background = palette[rng.integers(len(palette))] + rng.normal(0, 10, 3)
  blocks = tuple(
    (
      *sorted(rng.uniform(0, 1, 2)),
      *sorted(rng.uniform(0, 0.7, 2)),
      palette[rng.integers(len(palette))] + rng.normal(0, 20, 3),
    )
    for _ in range(rng.integers(1, 4))
  )
  spread = 0.08 if domain == "source" else 0.2  # target cameras disagree more about colour
  return Camera(
    background=background,
    floor=background * rng.uniform(0.6, 0.9),
    blocks=blocks,
    gain=rng.uniform(1 - spread, 1 + spread, 3) * rng.uniform(0.85, 1.15),
  )


def _fill(draw: ImageDraw.ImageDraw, shape: str, box, colour, mask: ImageDraw.ImageDraw, *args):
  c = (*tuple(int(v) for v in np.clip(colour, 0, 255)), 255)
  getattr(draw, shape)(box, *args, fill=c)
  getattr(mask, shape)(box, *args, fill=255)


def render_person(person: Identity, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
  """An RGBA image of one pose of ``person`` in the source (frontal) frame."""
  h, w = size_hw
  layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
  alpha = Image.new("L", (w, h), 0)
  d, m = ImageDraw.Draw(layer), ImageDraw.Draw(alpha)
  back_view = rng.random() < 0.5
  scale = person.height * rng.uniform(0.95, 1.05)
  body_h = scale * h
  cx = w * (0.5 + rng.uniform(-0.05, 0.05))
  top_y = h * (1 - scale) / 2 + h * rng.uniform(-0.03, 0.03)
  head_r = person.head * body_h
  shoulder = person.width * w * rng.uniform(0.95, 1.05) / 2
  neck_y = top_y + 2.1 * head_r
  waist_y = top_y + 0.52 * body_h
  feet_y = top_y + body_h
  swing = rng.uniform(-0.08, 0.08) * w
  leg_w = shoulder * 0.42

  # Backpack behind the body in the front view, over it in the back view.
  def backpack():
    if person.backpack is not None:
      side = shoulder * (0.8 if back_view else 1.15)
      _fill(d, "rectangle", (cx - side, neck_y + 0.05 * body_h, cx + side, waist_y - 0.02 * body_h), person.backpack, m)

  if not back_view:
    backpack()
  # Legs (trousers or shorts) or a skirt.
  for sign in (-1, 1):
    x = cx + sign * shoulder * 0.45 + sign * swing * 0.5
    _fill(d, "rectangle", (x - leg_w / 2, waist_y, x + leg_w / 2, feet_y - 0.03 * body_h), person.bottom, m)
    if person.shorts:
      _fill(
        d, "rectangle", (x - leg_w / 2, waist_y + 0.22 * body_h, x + leg_w / 2, feet_y - 0.03 * body_h), person.skin, m
      )
    _fill(
      d, "rectangle", (x - leg_w / 2 - 1, feet_y - 0.03 * body_h, x + leg_w / 2 + 2 * sign, feet_y), (30, 25, 25), m
    )
  if person.skirt:
    _fill(
      d,
      "polygon",
      [
        (cx - shoulder * 0.8, waist_y),
        (cx + shoulder * 0.8, waist_y),
        (cx + shoulder * 1.1, waist_y + 0.25 * body_h),
        (cx - shoulder * 1.1, waist_y + 0.25 * body_h),
      ],
      person.bottom,
      m,
    )
  # Arms.
  arm_w = shoulder * 0.32
  for sign in (-1, 1):
    x = cx + sign * (shoulder + arm_w / 2)
    dx = -sign * swing * 0.6
    sleeve_end = waist_y if person.long_sleeves else neck_y + 0.13 * body_h
    _fill(
      d,
      "polygon",
      [
        (x - arm_w / 2, neck_y + 2),
        (x + arm_w / 2, neck_y + 2),
        (x + arm_w / 2 + dx, sleeve_end),
        (x - arm_w / 2 + dx, sleeve_end),
      ],
      person.top,
      m,
    )
    if not person.long_sleeves:
      _fill(
        d,
        "polygon",
        [
          (x - arm_w / 2 + dx * 0.3, sleeve_end),
          (x + arm_w / 2 + dx * 0.3, sleeve_end),
          (x + arm_w / 2 + dx, waist_y),
          (x - arm_w / 2 + dx, waist_y),
        ],
        person.skin,
        m,
      )
    _fill(d, "ellipse", (x + dx - arm_w / 2, waist_y - 2, x + dx + arm_w / 2, waist_y + arm_w - 2), person.skin, m)
  # Torso with its pattern (the pattern is on the front only).
  torso = (cx - shoulder, neck_y, cx + shoulder, waist_y)
  _fill(d, "rectangle", torso, person.top, m)
  if not back_view and person.pattern != "plain":
    c2 = (*tuple(int(v) for v in np.clip(person.top2, 0, 255)), 255)
    step = max(2, int(0.05 * body_h))
    if person.pattern in ("hstripes", "checks"):
      for y in range(int(neck_y) + step, int(waist_y), 2 * step):
        d.rectangle((torso[0], y, torso[2], min(y + step - 1, waist_y)), fill=c2)
    if person.pattern in ("vstripes", "checks"):
      for x in range(int(torso[0]) + step, int(torso[2]), 2 * step):
        d.rectangle((x, neck_y, min(x + step - 1, torso[2]), waist_y), fill=c2)
  if back_view:
    backpack()
  if person.handbag is not None:
    side = 1 if rng.random() < 0.5 else -1
    x = cx + side * (shoulder + arm_w * 1.2)
    _fill(d, "rectangle", (x - arm_w, waist_y - 0.02 * body_h, x + arm_w, waist_y + 0.12 * body_h), person.handbag, m)
  # Head, hair, hat.
  _fill(d, "ellipse", (cx - head_r, top_y, cx + head_r, top_y + 2 * head_r), person.skin, m)
  if back_view:
    _fill(d, "ellipse", (cx - head_r, top_y, cx + head_r, top_y + 2 * head_r), person.hair, m)
  else:
    _fill(d, "chord", (cx - head_r, top_y, cx + head_r, top_y + 2 * head_r), person.hair, m, 160, 380)
  if person.hat is not None:
    _fill(
      d, "rectangle", (cx - head_r * 1.2, top_y - 0.2 * head_r, cx + head_r * 1.2, top_y + 0.5 * head_r), person.hat, m
    )
  _fill(d, "rectangle", (cx - head_r * 0.4, top_y + 1.9 * head_r, cx + head_r * 0.4, neck_y + 2), person.skin, m)
  rgba = np.asarray(layer).copy()
  rgba[..., 3] = np.asarray(alpha)
  if rng.random() < 0.5:
    rgba = rgba[:, ::-1]
  return rgba


def render_background(camera: Camera, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
  h, w = size_hw
  y = np.linspace(0, 1, h)[:, None, None]
  horizon = 0.72 + rng.uniform(-0.04, 0.04)
  image = np.where(y < horizon, camera.background * (0.9 + 0.2 * y), camera.floor * (1.1 - 0.3 * (y - horizon)))
  image = np.broadcast_to(image, (h, w, 3)).copy()
  shift = rng.uniform(-0.1, 0.1)
  for x0, x1, y0, y1, colour in camera.blocks:
    xs = slice(int(np.clip(x0 + shift, 0, 1) * w), int(np.clip(x1 + shift, 0, 1) * w))
    image[int(y0 * h) : int(y1 * h), xs] = colour
  return image


def _pixel_coefficients(h_norm: np.ndarray, size_hw: tuple[int, int]) -> tuple[float, ...]:
  """PIL's PERSPECTIVE coefficients (output pixel → input pixel, pixel centres at i + 0.5)."""
  h, w = size_hw
  to_pixel = np.array([[(w - 1) / 2, 0, (w - 1) / 2 + 0.5], [0, (h - 1) / 2, (h - 1) / 2 + 0.5], [0, 0, 1.0]])
  hp = to_pixel @ h_norm @ np.linalg.inv(to_pixel)
  hp = hp / hp[2, 2]
  return tuple(hp.reshape(-1)[:8])


def target_colours(image: np.ndarray) -> np.ndarray:
  """The target camera network's colour pipeline on float RGB in [0, 255]: channel mixing, then gamma."""
  return 255.0 * (np.clip(image / 255.0, 0, 1) @ np.asarray(TARGET_COLOUR_MATRIX).T) ** TARGET_GAMMA


def warp_border(image: np.ndarray, h_norm: np.ndarray) -> np.ndarray:
  """Bilinear warp of float ``image[H, W, C]`` by an output → input normalised homography, edges repeated.

  The numpy twin of ``geometry.warp(..., padding="border")`` (same coordinate convention), so the
  paired ground truth is exactly what S1 would produce with the true homography.
  """
  h, w = image.shape[:2]
  ys, xs = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
  points = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.asarray(h_norm, np.float64).T
  u = np.clip((points[..., 0] / points[..., 2] + 1) * (w - 1) / 2, 0, w - 1)
  v = np.clip((points[..., 1] / points[..., 2] + 1) * (h - 1) / 2, 0, h - 1)
  u0, v0 = np.minimum(np.floor(u).astype(int), w - 2), np.minimum(np.floor(v).astype(int), h - 2)
  fu, fv = (u - u0)[..., None], (v - v0)[..., None]
  return (1 - fv) * ((1 - fu) * image[v0, u0] + fu * image[v0, u0 + 1]) + fv * (
    (1 - fu) * image[v0 + 1, u0] + fu * image[v0 + 1, u0 + 1]
  )


def _downsample(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
  return np.asarray(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize(size_hw[::-1], Image.BOX))


def render_image(
  person: Identity,
  camera: Camera,
  domain: str,
  rng: np.random.Generator,
  size_hw: tuple[int, int],
  h_view: np.ndarray | None,
  truths: Sequence[np.ndarray] = (),
):
  """(uint8 RGB [H, W, 3], uint8 mask [H, W] in {0, 255}) of one image of ``person`` by ``camera``.

  ``h_view``: the homography the camera sees the person through (a target camera, or a source
  camera at the target's height), or None (a low source camera: the person frontal).
  With ``truths`` (source images only: the homographies from this image to each target view) also a
  list of uint8 RGBA ground truths of its translation (module docstring), one per homography. They
  draw nothing from ``rng``, so the benchmark is the same with or without them.
  """
  big = (size_hw[0] * SUPERSAMPLE, size_hw[1] * SUPERSAMPLE)
  person_layer = Image.fromarray(render_person(person, rng, big), "RGBA")
  if h_view is not None:
    person_layer = person_layer.transform(
      big[::-1], Image.PERSPECTIVE, _pixel_coefficients(h_view, big), Image.BILINEAR
    )
  rgba = np.asarray(person_layer).astype(np.float32)
  alpha = rgba[..., 3:] / 255.0
  image = rgba[..., :3] * alpha + render_background(camera, rng, big) * (1 - alpha)
  image = image * camera.gain * rng.uniform(0.9, 1.1)
  rendered_truths = []
  if len(truths) and domain != "source":
    raise ValueError("paired ground truth is rendered for source images only")
  for h_truth in truths:
    rgba = np.concatenate([image, alpha * 255.0], -1)
    warped = warp_border(rgba, h_truth)
    truth_rgb = _downsample(target_colours(warped[..., :3]), size_hw)
    truth_mask = (_downsample(warped[..., 3], size_hw) >= 128).astype(np.uint8) * 255
    rendered_truths.append(np.concatenate([truth_rgb, truth_mask[..., None]], -1))
  if domain == "target":
    image = target_colours(image)
  image = _downsample(image, size_hw).astype(np.float32) + rng.normal(0, 4, (*size_hw, 3))
  mask = _downsample(alpha[..., 0] * 255, size_hw) >= 128
  out = np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255
  return (*out, rendered_truths) if len(truths) else out


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  height: int = 128
  width: int = 64
  train_ids: int = 100
  test_ids: int = 100
  num_cameras: int = 4
  images_per_camera: int = 2  # per identity and camera it appears in
  distractors: int = 40  # gallery images of pid 0000 (people outside the id set)
  junk: int = 20  # gallery images of pid -1 (bad boxes: crops of background)
  tilt: float = DEFAULT_TILT  # the central target view's tilt
  tilt_spread: float = DEFAULT_TILT_SPREAD  # the target views' tilts reach tilt ± tilt_spread
  target_views: int = DEFAULT_TARGET_VIEWS  # distinct target viewpoints (camera cN takes view (N-1) mod this)
  seed: int = 0
  paired_images: int = 256  # (at most) source training images given paired truths (paired/): in-sample
  heldout_paired_images: int = 256  # (at most) source test images given paired truths: held-out
  # Source cameras (the last ones) mounted as high as the target's: the source is then seen from two
  # heights, the case the paper's viewpoint groups address. 0: every source camera is low.
  source_high_cameras: int = 0

  def check(self, prefix: str = "--") -> None:
    """Refuses a spec whose benchmark could not be read or evaluated; the error names ``prefix + field``."""
    rules = (
      ("height", self.height >= 16, "at least 16 (people need pixels; the networks downsample)"),
      ("width", self.width >= 8, "at least 8"),
      ("train_ids", self.train_ids >= 2, "at least 2 (an IDE needs two classes)"),
      ("test_ids", self.test_ids >= 1, "at least 1 (the query split would be empty)"),
      (
        "num_cameras",
        2 <= self.num_cameras <= 6,
        "2 to 6 (a query needs a gallery camera other than its own; the Market-1501 layout numbers cameras 1 to 6)",
      ),
      (
        "images_per_camera",
        self.images_per_camera >= 2,
        "at least 2 (one image of each identity and camera is its "
        "query, the others its gallery: with 1 no query has a true match)",
      ),
      ("distractors", self.distractors >= 0, "0 or more"),
      ("junk", self.junk >= 0, "0 or more"),
      ("paired_images", self.paired_images >= 0, "0 or more"),
      ("tilt", -0.9 <= self.tilt <= 0.9, "between -0.9 and 0.9"),
      ("target_views", 1 <= self.target_views <= self.num_cameras, f"1 to num_cameras ({self.num_cameras})"),
      (
        "tilt_spread",
        self.tilt_spread >= 0 and self.tilt - self.tilt_spread >= -0.9 and self.tilt + self.tilt_spread <= 0.9,
        "0 or more, with tilt ± tilt_spread between -0.9 and 0.9",
      ),
      ("heldout_paired_images", self.heldout_paired_images >= 0, "0 or more"),
      (
        "source_high_cameras",
        0 <= self.source_high_cameras < self.num_cameras,
        f"0 to {self.num_cameras - 1} (at least one source camera stays low)",
      ),
    )
    for field, ok, expected in rules:
      if not ok:
        raise ConfigError(f"{prefix}{field}={getattr(self, field)!r}: expected {expected}")


def _write(root: str, folder: str, name: str, image: np.ndarray, mask: np.ndarray) -> None:
  Image.fromarray(image).save(os.path.join(root, layouts.MARKET_ROOT, folder, name), quality=95)
  Image.fromarray(mask, "L").save(
    os.path.join(root, layouts.MASKS_ROOT, layouts.MARKET_ROOT, folder, name[:-4] + ".png")
  )


PAIRED_DIR = "paired"


def paired_name(source_path: str, view: int) -> str:
  """The ground truth of source image ``folder/name`` in target view ``view``: ``<stem>_v<view>.png``
  (RGBA, alpha = mask). Stems are unique across the source's splits (the frame number)."""
  return f"{os.path.splitext(os.path.basename(source_path))[0]}_v{view}.png"


def source_high_cameras(spec: BenchmarkSpec) -> frozenset[int]:
  """The 1-based ids of the source cameras mounted at the target's height (the last ones)."""
  return frozenset(range(spec.num_cameras - spec.source_high_cameras + 1, spec.num_cameras + 1))


def source_viewpoints(spec: BenchmarkSpec) -> dict[str, str]:
  """Source camera id (as text, JSON's key type) → ``"low"`` or ``"high"``."""
  high = source_high_cameras(spec)
  return {str(c): "high" if c in high else "low" for c in range(1, spec.num_cameras + 1)}


def view_tilts(spec: BenchmarkSpec) -> list[float]:
  """The target views' tilts: ``target_views`` of them, evenly from ``tilt - tilt_spread`` to ``tilt + tilt_spread``."""
  if spec.target_views == 1:
    return [spec.tilt]
  return [float(t) for t in spec.tilt + spec.tilt_spread * np.linspace(-1.0, 1.0, spec.target_views)]


def true_homographies(spec: BenchmarkSpec, high: bool) -> list[np.ndarray]:
  """A source image's true translations into each target view (output → input, normalised).

  A low camera's image is the person's frontal frame: view k's homography itself. A high camera's
  image already shows the frame through the central view ``H_c``: ``H_c⁻¹ H_k``.
  """
  views = [view_homography(t) for t in view_tilts(spec)]
  if not high:
    return views
  inverse_central = np.linalg.inv(view_homography(spec.tilt))
  return [inverse_central @ h for h in views]


def _spread(names: Sequence[str], count: int) -> list[str]:
  picks = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
  return [names[i] for i in picks] if len(names) and count else []


def write_domain(root: str, domain: str, spec: BenchmarkSpec, paired_dir: str | None = None) -> dict:
  """Writes one domain as a Market-1501-layout manual directory; returns its counts.

  With ``paired_dir`` (the source domain), also writes the paired ground truths (one per target
  view) of ``spec.paired_images`` training images and ``spec.heldout_paired_images`` test images,
  each spread evenly over their split, and returns their ``folder/name`` paths under
  ``"paired_train"`` and ``"paired_heldout"``.
  """
  rng = np.random.default_rng([spec.seed, DOMAINS.index(domain)])
  size = (spec.height, spec.width)
  views = [view_homography(t) for t in view_tilts(spec)]
  central = view_homography(spec.tilt)
  for folder in layouts.MARKET_SPLITS.values():
    os.makedirs(os.path.join(root, layouts.MARKET_ROOT, folder), exist_ok=True)
    os.makedirs(os.path.join(root, layouts.MASKS_ROOT, layouts.MARKET_ROOT, folder), exist_ok=True)
  cameras = [random_camera(rng, domain) for _ in range(spec.num_cameras)]
  high = source_high_cameras(spec) if domain == "source" else frozenset()
  if domain == "target":
    seen_through = [views[c % len(views)] for c in range(spec.num_cameras)]
  else:
    seen_through = [central if c + 1 in high else None for c in range(spec.num_cameras)]
  truths_of = {c: true_homographies(spec, c + 1 in high) for c in range(spec.num_cameras)}
  counts = {"bounding_box_train": 0, "query": 0, "bounding_box_test": 0}
  frame = 0
  # folder/name → (the generator's state before the image, its person, camera and pixels' digest): the
  # paired truths draw nothing, so the chosen subsets are rendered again from there with them.
  candidates = {"train": {}, "heldout": {}}

  def name(pid: int, camera: int) -> str:
    nonlocal frame
    frame += 1
    pid_text = "-1" if pid < 0 else f"{pid:04d}"
    return f"{pid_text}_c{camera + 1}s1_{frame:06d}_00.jpg"

  ids = range(1, spec.train_ids + spec.test_ids + 1)
  for pid in tqdm(ids, desc=f"synthetic {domain}", unit="id", leave=False, mininterval=1.0):
    person = random_identity(rng)
    seen_by = sorted(rng.choice(spec.num_cameras, size=int(rng.integers(2, spec.num_cameras + 1)), replace=False))
    for camera in seen_by:
      for k in range(spec.images_per_camera):
        train = pid <= spec.train_ids
        before = rng.bit_generator.state if paired_dir is not None else None  # a new dict each read
        image, mask = render_image(person, cameras[camera], domain, rng, size, seen_through[camera])
        if train:
          folder = "bounding_box_train"
        else:  # Market-style: one query per test identity and camera, the rest in the gallery
          folder = "query" if k == 0 else "bounding_box_test"
        file_name = name(pid, camera)
        _write(root, folder, file_name, image, mask)
        counts[folder] += 1
        if before is not None:
          digest = hashlib.sha256(image.tobytes()).hexdigest()
          candidates["train" if train else "heldout"][f"{folder}/{file_name}"] = (before, person, camera, digest)
  for _ in range(spec.distractors):
    camera = int(rng.integers(spec.num_cameras))
    image, mask = render_image(random_identity(rng), cameras[camera], domain, rng, size, seen_through[camera])
    _write(root, "bounding_box_test", name(0, camera), image, mask)
    counts["bounding_box_test"] += 1
  for _ in range(spec.junk):
    camera = int(rng.integers(spec.num_cameras))
    big = (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE)
    background = Image.fromarray(np.clip(render_background(cameras[camera], rng, big), 0, 255).astype(np.uint8))
    image = np.asarray(background.resize(size[::-1], Image.BOX))
    _write(root, "bounding_box_test", name(-1, camera), image, np.zeros(size, np.uint8))
    counts["bounding_box_test"] += 1
  if paired_dir is not None:
    os.makedirs(paired_dir, exist_ok=True)
    for which, count in (("train", spec.paired_images), ("heldout", spec.heldout_paired_images)):
      chosen = _spread(sorted(candidates[which], key=lambda n: n.split("/")[1]), count)
      for path in chosen:
        before, person, camera, digest = candidates[which][path]
        replay = np.random.Generator(type(rng.bit_generator)())
        replay.bit_generator.state = before
        image, _, truths = render_image(
          person, cameras[camera], domain, replay, size, seen_through[camera], truths=truths_of[camera]
        )
        if hashlib.sha256(image.tobytes()).hexdigest() != digest:  # the truths must not draw from rng
          raise RuntimeError(f"rendering {path} again gave other pixels: its paired truths would not be its own")
        for view, truth in enumerate(truths):
          Image.fromarray(truth, "RGBA").save(os.path.join(paired_dir, paired_name(path, view)))
      counts[f"paired_{which}"] = chosen
  return counts


MARKER = ".sagan_jax_synthetic"  # written first: this folder's benchmark files are ours to replace
# benchmark.json's layout; a folder of ours written in another (older) layout is regenerated.
FORMAT = 2  # 2: several target views, held-out paired truths
PREPARED_DIR = "tfds"


def _is_benchmark_meta(path: str) -> bool:
  """A ``benchmark.json`` this generator wrote (versions before the marker file)."""
  try:
    with open(path) as f:
      return "spec" in json.load(f)
  except (OSError, ValueError):
    return False


def generate(out: str, spec: BenchmarkSpec = BenchmarkSpec(), overwrite: bool = False) -> dict:
  """Writes both domains and ``benchmark.json`` under ``out``; returns the metadata.

  The metadata file is written last, so a directory without it is an interrupted run, which is
  regenerated. Only a folder this function made (its marker file) is ever cleared, and then only
  the folders it writes: a non-empty folder without the marker is refused, naming what is there.
  """
  spec.check()
  meta_path = os.path.join(out, "benchmark.json")
  ours = os.path.isfile(os.path.join(out, MARKER)) or _is_benchmark_meta(meta_path)
  if os.path.exists(meta_path) and not overwrite and ours:
    with open(meta_path) as f:
      meta = json.load(f)
    if meta.get("format") != FORMAT:
      logging.warning("%s holds a synthetic benchmark of an older layout: regenerating it", out)
      return generate(out, spec, overwrite=True)
    # Fields added since a benchmark was written hold their defaults in it (what it was made with).
    if {**dataclasses.asdict(BenchmarkSpec()), **meta["spec"]} != dataclasses.asdict(spec):
      raise ConfigError(
        f"{out!r} holds a synthetic benchmark with another spec {meta['spec']}; "
        "choose another --out or pass --overwrite"
      )
    return meta
  present = sorted(os.listdir(out)) if os.path.isdir(out) else []
  if present and not ours:
    shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
    raise ConfigError(
      f"{out!r} is not empty ({shown}) and was not made by this generator: nothing was written or "
      "removed; choose an empty or new --out"
    )
  os.makedirs(out, exist_ok=True)
  began = time.perf_counter()
  with open(os.path.join(out, MARKER), "w") as f:
    f.write(
      "written by python -m sagan_jax.data.synthetic; --overwrite replaces only source/, target/, paired/, tfds/ "
      "and benchmark.json\n"
    )
  # The prepared copies (tfds/, where the experiments prepare a synthetic benchmark) go with the images.
  for folder in (*DOMAINS, PAIRED_DIR, PREPARED_DIR):
    shutil.rmtree(os.path.join(out, folder), ignore_errors=True)
  if os.path.exists(meta_path):
    os.remove(meta_path)
  counts = {
    domain: write_domain(
      os.path.join(out, domain), domain, spec, paired_dir=os.path.join(out, PAIRED_DIR) if domain == "source" else None
    )
    for domain in DOMAINS
  }
  paired = {which: counts["source"].pop(f"paired_{which}") for which in ("train", "heldout")}
  viewpoint_of = lambda path: source_viewpoints(spec)[str(layouts.MARKET_NAME.match(path.split("/")[1]).group(2))]
  meta = {
    "format": FORMAT,
    "spec": dataclasses.asdict(spec),
    "layout": "Market-1501 (builder market1501, config masked) under source/ and target/",
    "view_tilts": view_tilts(spec),
    "view_homographies": [view_homography(t).tolist() for t in view_tilts(spec)],
    "central_homography": view_homography(spec.tilt).tolist(),
    "view_homography_doc": (
      "target-image → source-frame coordinates, normalised (x first, [-1, 1], ±1 at corner pixel "
      "centres): the T_xy an ideal S1 may predict, one per target view (target camera cN sees view (N - 1) "
      "mod len(view_homographies)); the central one is the tilt the views spread around"
    ),
    "source_viewpoints": source_viewpoints(spec),
    "source_viewpoints_doc": "source camera → height: high cameras see the person through central_homography",
    "target_colour_matrix": TARGET_COLOUR_MATRIX,
    "target_gamma": TARGET_GAMMA,
    "counts": counts,
    "paired": {
      "dir": PAIRED_DIR,
      "root": f"source/{layouts.MARKET_ROOT}",
      "train": paired["train"],
      "heldout": paired["heldout"],
      "viewpoints": {which: [viewpoint_of(p) for p in paths] for which, paths in paired.items()},
      "doc": (
        "for each listed source image (folder/name under root; train: the GAN's own inputs, heldout: test "
        "identities, never a GAN input), paired/<stem>_v<k>.png (RGBA, alpha = person mask) is its ideal "
        "translation into target view k: the same rendering warped whole (edges repeated) by the view's "
        "homography, or from a high source camera by central⁻¹ · view, in the target colours, without "
        "noise; no split reads it"
      ),
    },
  }
  with open(meta_path + ".tmp", "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(meta_path + ".tmp", meta_path)
  images = {domain: sum(counts[domain].values()) for domain in DOMAINS}
  print(
    f"generated the synthetic benchmark: source {images['source']}, target {images['target']} images, "
    f"{len(paired['train'])} + {len(paired['heldout'])} paired truths in {out} ({time.perf_counter() - began:.0f} s)",
    flush=True,
  )
  return meta


def contact_sheet(out: str, path: str, per_domain: int = 8) -> None:
  """A PNG of the first gallery images of both domains (source row over target row), for the docs."""
  rows = []
  for domain in DOMAINS:
    folder = os.path.join(out, domain, layouts.MARKET_ROOT, "query")
    names = sorted(os.listdir(folder))[:per_domain]
    rows.append(np.concatenate([np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")) for n in names], axis=1))
  Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def _define_flags() -> None:
  """The command's flags: ``--out`` and one per `BenchmarkSpec` field (defined only when run as a command)."""
  flags.DEFINE_string("out", None, "output directory (source/, target/, benchmark.json)")
  defaults = BenchmarkSpec()
  define = {int: flags.DEFINE_integer, float: flags.DEFINE_float}
  for field in dataclasses.fields(BenchmarkSpec):
    define[type(getattr(defaults, field.name))](
      field.name, getattr(defaults, field.name), f"BenchmarkSpec.{field.name}"
    )
  flags.DEFINE_bool("overwrite", False, "replace a benchmark this generator wrote with another spec")
  flags.DEFINE_string("contact_sheet", None, "also write a PNG of example crops of both domains here")
  flags.mark_flag_as_required("out")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  f = flags.FLAGS
  spec = BenchmarkSpec(**{field.name: f[field.name].value for field in dataclasses.fields(BenchmarkSpec)})
  meta = cli.exit_on_user_error(generate, f.out, spec, overwrite=f.overwrite)
  if f.contact_sheet:
    contact_sheet(f.out, f.contact_sheet)
  print(json.dumps(meta["counts"], indent=1))


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)
