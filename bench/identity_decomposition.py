"""Where a finished run's translation loses identities: G1's change split into the part one colour
transform per region explains and the spatially varying rest (a table).

    python -m bench.identity_decomposition --config=configs/cuhk01_viper.py --workdir=runs/c2v [--config...]

The flags are the finished run's own (as for `evaluate.py`). On the report's sampled source images,
with one spatial code each, every row is scored by the run's translation report (one reference IDE,
``--reference_seed``, 0 by default, even where the report averages several: the decomposition
compares rows inside one reference, and another draw moves the levels, docs/fidelity.md; and the
report's target sample):

* S1(x): the warp alone, G1 skipped;
* G1(S1(x)): the translation;
* region colour fit: per image, two affine colour maps (3×3 and an offset, least squares), one from
  S1(x) to G1(S1(x)) over the warped person mask and one over the background, applied to S1(x):
  G1's palette change without its spatial variation within each region (blotches, blur);
* person by colour fit, background by G1: the person changed by the fitted map only;
* person kept, background by G1, and the reverse: `translate.region=background`'s and
  `translate.region=person`'s composites;
* S1's mean warp, every image, and G1 on it: the mean of S1's predicted parameters over the images
  applied to each (one warp for all): what the per-image variation of S1's warps costs;
* the source reframed: the untranslated images under the one affine map (a scale and a shift per
  axis, `reframing`) that moves their person masks' mean framing (`translation_metrics.framing`) to
  the target's: what this reference says of a framing change as large as the target asks for, with
  nothing else changed.

Below the table, the same two figures along G1's change (`blend`): S1(x) + α·(G1(S1(x)) − S1(x)) for
α from 0 (the warp alone) to 1 (the translation), over the whole image and over the person only
(the background by G1 throughout: α = 0 is "person kept, background by G1"). Each endpoint repeats a
row of the table above; in between they say how much of the domain gap a translation in G1's own
direction closes at each level of kept identities, so whether one level meets both of the issue's
targets (the gap at most 0.8 of its raw figure, ``identity_kept`` at least 0.9) on this run.

Above the table, how G1 recolours the person (`person_colours`: brightness before and after, and how
well each person keeps their place in the palette); below it, the framing of the source masks, S1's
warped masks, the reframed masks and the target's masks: each `translation_metrics.FRAMING`
statistic's mean, the median keystone ratio (`viewpoints.mask_keystone`: mask width in the person's
top quarter over its bottom quarter, which a camera looking down more steeply raises, and which the
framing statistics do not see) and the `framing_gap` to the target.

Beside the report's `identity_kept`, ``cross-camera kept``: the same rank-1 with the gallery cut to
the source's other cameras (its untranslated figure the unit), since same-camera photographs of a
person can share a background a translation repaints. It also prints the share of G1's change on
the person (variance of G1(S1(x)) − S1(x)) that the person's colour map explains, and the share of
that change's spectral power at or below a quarter of the Nyquist frequency in both axes (how
smooth it is).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from sagan_jax import cli, geometry
from sagan_jax import translation_metrics as metrics
from sagan_jax.data import builders, pipeline, viewpoints
from sagan_jax.experiments import report, stages
from sagan_jax.sagan.model import XY

_CONFIG = cli.define_config_file("config", None, "the finished run's config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "the finished run's workdir", required=True)
_REFERENCE_SEED = flags.DEFINE_integer(
  "reference_seed", 0, "which reference IDE scores the rows (trained and cached if it is not yet)", lower_bound=0
)
_ALPHAS = flags.DEFINE_list(
  "alphas", ["0", "0.25", "0.5", "0.75", "1"], "the levels of G1's change the last table scores"
)
_BATCH = 64


def colour_fit(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
  """Per image, the affine colour map (least squares over pixels weighted by ``weight``) taking
  ``source[B, H, W, 3]`` to ``target``, applied to ``source``; images with no weight are unchanged."""
  out = source.copy()
  for i in range(len(source)):
    w = weight[i].reshape(-1)
    if w.sum() < 4:
      continue
    a = np.concatenate([source[i].reshape(-1, 3), np.ones((w.size, 1))], 1) * np.sqrt(w)[:, None]
    b = target[i].reshape(-1, 3) * np.sqrt(w)[:, None]
    m, *_ = np.linalg.lstsq(a, b, rcond=None)
    out[i] = (np.concatenate([source[i].reshape(-1, 3), np.ones((w.size, 1))], 1) @ m).reshape(source[i].shape)
  return np.clip(out, -1.0, 1.0)


def person_colours(before: np.ndarray, after: np.ndarray, person: np.ndarray) -> dict:
  """How a change recolours people, per image over its person pixels (``person[B, H, W]`` > 0.5):
  the brightness (mean atanh over pixels and channels, images in [-1, 1]) before and after, as mean
  and standard deviation over the images, and each channel's correlation over the images between the
  person's mean colour before and after (1: every person keeps their place in the palette)."""
  keep = (person > 0.5).reshape(len(person), -1).any(1)
  m = (person[keep] > 0.5)[..., None]
  logit = lambda v: np.arctanh(np.clip(v[keep], -0.999, 0.999))
  mean = lambda v: (v * m).sum((1, 2)) / m.sum((1, 2))  # [images, 3]
  b, a = mean(logit(before)), mean(logit(after))
  cb, ca = mean(before[keep]), mean(after[keep])
  corr = [float(np.corrcoef(cb[:, k], ca[:, k])[0, 1]) for k in range(3)]
  return {
    "brightness_before": (float(b.mean(1).mean()), float(b.mean(1).std())),
    "brightness_after": (float(a.mean(1).mean()), float(a.mean(1).std())),
    "colour_correlation": corr,
  }


def blend(start: np.ndarray, end: np.ndarray, alpha: float, region: np.ndarray | None = None) -> np.ndarray:
  """``(1 − alpha)·start + alpha·end`` (exactly ``start`` at 0 and ``end`` at 1); with ``region[B, H, W, 1]``
  (0 or 1) only there, ``end`` elsewhere."""
  mixed = (1 - alpha) * start + alpha * end
  return mixed if region is None else region * mixed + (1 - region) * end


GAP_TARGET, KEPT_TARGET = 0.8, 0.9  # issue 36's: the gap at most 0.8 of raw, identities kept at least 0.9


def targets_along(alphas, gap_ratios, kept, steps: int = 2001) -> dict:
  """Where both translation targets hold along G1's change, read between the scored levels linearly.

  ``window``: ``(lowest, highest)`` α with gap/raw ≤ `GAP_TARGET` and kept ≥ `KEPT_TARGET`, or None;
  ``balance``: the α where the two shortfalls are equal (gap/raw − 0.8 = 0.9 − kept), None when they
  never cross between the lowest and highest level scored."""
  order = np.argsort(alphas)
  a = np.asarray(alphas, np.float64)[order]
  grid = np.linspace(a[0], a[-1], steps)
  g = np.interp(grid, a, np.asarray(gap_ratios, np.float64)[order])
  k = np.interp(grid, a, np.asarray(kept, np.float64)[order])
  both = (g <= GAP_TARGET) & (k >= KEPT_TARGET)
  window = (float(grid[both].min()), float(grid[both].max())) if both.any() else None
  excess = (g - GAP_TARGET) - (KEPT_TARGET - k)
  crossing = np.nonzero(np.diff(np.sign(excess)))[0]
  balance = None
  if excess[0] == 0 or len(crossing):
    i = 0 if excess[0] == 0 else crossing[0]
    x0, x1, y0, y1 = grid[i], grid[min(i + 1, steps - 1)], excess[i], excess[min(i + 1, steps - 1)]
    balance = float(x0 if y1 == y0 else x0 - y0 * (x1 - x0) / (y1 - y0))
  return {"window": window, "balance": balance}


def parse_alphas(values) -> list[float]:
  """``--alphas``: numbers in [0, 1]; anything else is the flag's one error."""
  try:
    alphas = [float(v) for v in values]
  except ValueError:
    alphas = []
  if not alphas or not all(0.0 <= a <= 1.0 for a in alphas):
    raise app.UsageError(f"--alphas={','.join(values)}: give numbers in [0, 1], comma-separated")
  return alphas


def low_frequency_share(change: np.ndarray, cutoff: float = 0.25) -> float:
  """Share of ``change[B, H, W, C]``'s spectral power (mean removed per image) at or below ``cutoff``
  × Nyquist in both axes."""
  centred = change - change.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(centred, axes=(1, 2))) ** 2
  fy = np.abs(np.fft.fftfreq(change.shape[1]))[:, None] / 0.5
  fx = np.abs(np.fft.fftfreq(change.shape[2]))[None, :] / 0.5
  low = np.maximum(fy, fx) <= cutoff
  return float(power[:, low].sum() / max(power.sum(), 1e-12))


def reframing(source_masks: np.ndarray, target_masks: np.ndarray, padding: str = "zeros", steps: int = 8) -> np.ndarray:
  """The output→input affine ``[3, 3]`` (a scale and a shift per axis, normalised coordinates) under
  which ``source_masks``' mean centroid and spread (`translation_metrics.framing`) become
  ``target_masks``'. Started from the ratio of the spreads and refined on the warped masks, since the
  frame's edge cuts off what a zoom pushes out of it."""
  goal = metrics.framing(target_masks).mean(0)[1:]
  _, cy, cx, sy, sx = metrics.framing(source_masks).mean(0)
  scale = np.array([sx / goal[3], sy / goal[2]])  # (x, y), as `geometry`
  shift = np.array([cx, cy]) - scale * goal[[1, 0]]
  for _ in range(steps):
    h = np.array([[scale[0], 0, shift[0]], [0, scale[1], shift[1]], [0, 0, 1]], np.float32)
    _, wy, wx, wsy, wsx = metrics.framing(_warp(source_masks, h, padding)).mean(0)
    scale = scale * np.array([wsx / goal[3], wsy / goal[2]])  # a spread too small: sample a smaller window
    shift = shift + scale * (np.array([wx, wy]) - goal[[1, 0]])
  return np.array([[scale[0], 0, shift[0]], [0, scale[1], shift[1]], [0, 0, 1]], np.float32)


def _warp(images: np.ndarray, h: np.ndarray, padding: str) -> np.ndarray:
  warped = geometry.warp(jnp.asarray(images), jnp.broadcast_to(jnp.asarray(h), (len(images), 3, 3)), padding=padding)
  return np.asarray(warped)


def cross_camera_rank1(query, gallery, pids, cameras) -> float:
  """Rank-1 of ``query[i]`` (row i's translation) among the ``gallery`` rows of the other cameras."""
  hits = total = 0
  for c in np.unique(cameras):
    q, g = cameras == c, cameras != c
    r = metrics.identity_rank1(query[q], pids[q], gallery[g], pids[g])
    answerable = np.isin(pids[q], pids[g]).sum()
    if r is not None:
      hits, total = hits + r * answerable, total + answerable
  return hits / max(total, 1)


def main(argv) -> None:
  del argv
  layers = cli.cpu_setup()
  cli.quiet_logging()
  alphas = parse_alphas(_ALPHAS.value)
  cli.exit_on_user_error(measure, _CONFIG.value, _WORKDIR.value, layers, _REFERENCE_SEED.value, alphas)


def measure(config, workdir: str, layers, reference_seed: int = 0, alphas=(0.0, 0.25, 0.5, 0.75, 1.0)) -> None:
  with stages.opened(config, workdir, layers=layers) as run:
    instrument = report.Instrument(run, reference_seed)
    a = instrument.adaptations[0]
    positions = instrument.source_positions(len(a.source_indices))
    rows = np.asarray(a.source_indices)[positions]
    cameras = builders.read_labels(run.datasets.builder("source"), "train")["camera_id"][rows]
    model, params = stages.load_sagan(run, a)
    size, source = run.image_size, run.datasets.source_train()
    x = np.stack([pipeline.preprocess(source[int(i)], size, run.datasets.mask_mode, flip=False)["image"] for i in rows])

    @jax.jit
    def adapt(b, key):
      masks = model.masks_for_input(b[..., 3:])
      out = model.adapt(params, XY, b[..., :3], masks, model.spatial_codes(key, b.shape[0]))
      return out.spatial, out.adapted, out.mask, out.transform

    parts = [adapt(jnp.asarray(x[i : i + _BATCH]), jax.random.key(i)) for i in range(0, len(x), _BATCH)]
    spatial, adapted, mask = (np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(3))
    mean_warp = None
    if model.config.spatial:  # the STMs' parameters, averaged over the images, for every image
      transforms = np.concatenate([np.asarray(p[3]) for p in parts])

      @jax.jit
      def adapt_with(b, p):
        out = model.adapt(params, XY, b[..., :3], model.masks_for_input(b[..., 3:]), None, transform=p)
        return out.spatial, out.adapted, out.mask

      mean = jnp.asarray(transforms.mean(0))
      batches = [x[i : i + _BATCH] for i in range(0, len(x), _BATCH)]
      mparts = [adapt_with(jnp.asarray(b), jnp.broadcast_to(mean, (len(b), mean.shape[0]))) for b in batches]
      mean_warp = [np.concatenate([np.asarray(p[k]) for p in mparts]) for k in range(3)]
    target_masks = report.person_masks(run.plan.target_source, instrument.target_rows, size)
    source_masks = x[..., 3:]
    padding = run.config.sagan.warp_padding
  person = (mask > 0.5).astype(np.float32)
  framed = target_masks is not None and run.datasets.mask_mode == "data"  # both sets' own person masks
  if framed:
    affine = reframing(source_masks, target_masks, padding)
    reframed = _warp(np.concatenate([x[..., :3], source_masks], -1), affine, padding)
  fitted_person = colour_fit(spatial, adapted, person[..., 0])
  fitted_background = colour_fit(spatial, adapted, 1 - person[..., 0])
  fitted = person * fitted_person + (1 - person) * fitted_background
  change = adapted - spatial
  residual = adapted - fitted_person
  on_person = person[..., 0] > 0
  explained = 1 - residual[on_person].var(axis=0).sum() / max(change[on_person].var(axis=0).sum(), 1e-12)
  cases = {
    "S1(x): the warp alone": spatial,
    "G1(S1(x)): the translation": adapted,
    "region colour fit (two affine maps per image)": fitted,
    "person by colour fit, background by G1": person * fitted_person + (1 - person) * adapted,
    "person kept, background by G1": person * spatial + (1 - person) * adapted,
    "person by G1, background kept": person * adapted + (1 - person) * spatial,
  }
  if mean_warp is not None:
    cases["S1's mean warp, every image"], cases["G1 on S1's mean warp"] = mean_warp[0], mean_warp[1]
  if framed:
    cases["the source reframed (one affine map)"] = reframed[..., :3]
  pids = instrument.source_pids[rows]
  own = np.arange(len(rows))
  print(
    f"Reference IDE seed {reference_seed}. {len(rows)} source images, one code each; "
    "G1's change on the person: the colour map explains "
    f"{explained:.3f} of its variance; {low_frequency_share(change * person):.3f} of its power "
    f"(background {low_frequency_share(change * (1 - person)):.3f}) is at or below 1/4 Nyquist; mean |change| "
    f"person {np.abs(change)[on_person].mean():.3f}, background {np.abs(change)[~on_person].mean():.3f} "
    "(images in [-1, 1])"
  )
  colours = person_colours(spatial, adapted, person[..., 0])
  print(
    "G1 on the person (mean atanh over its pixels, images' mean ± sd): brightness "
    f"{colours['brightness_before'][0]:+.2f} ± {colours['brightness_before'][1]:.2f} → "
    f"{colours['brightness_after'][0]:+.2f} ± {colours['brightness_after'][1]:.2f}; each person's mean colour "
    "before and after correlates at " + " / ".join(f"{v:.2f}" for v in colours["colour_correlation"]) + " (R / G / B)"
  )
  unit = lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
  gallery = unit(instrument.features(instrument.source, rows))
  cross_raw = cross_camera_rank1(gallery, gallery, pids, cameras)
  print(
    "\n| images | domain_gap | identity_kept | identity_rank1 | cross-camera kept | artifact_energy |"
    "\n|---|---|---|---|---|---|"
  )
  as_source = lambda images: report.ArraySource(report.as_uint8(images), pids)
  score = lambda images: instrument.score(rows, as_source(images), own, pids, own)
  for name, images in cases.items():
    array = as_source(images)
    s = instrument.score(rows, array, own, pids, own)
    cross = cross_camera_rank1(unit(instrument.features(array, own)), gallery, pids, cameras) / max(cross_raw, 1e-12)
    print(
      f"| {name} | {s['domain_gap']:.1f} (raw {s['domain_gap_raw']:.1f}) | {s['identity_kept']:.3f} "
      f"| {s['identity_rank1']:.3f} | {cross:.3f} | {s['artifact_energy']:.2f} |"
    )
  print(f"\nUntranslated rank-1: {s['identity_rank1_raw']:.3f}; across cameras {cross_raw:.3f}.")
  if mean_warp is not None:
    means = ", ".join(f"{v:+.3f}" for v in transforms.mean(0))
    spreads = ", ".join(f"{v:.3f}" for v in transforms.std(0))
    layout = f"{model.config.transform}, `geometry`'s layout"
    print(f"S1's parameters ({layout}): mean {means}; standard deviation {spreads}.")
  print(
    "\nAlong G1's change, S1(x) + α·(G1(S1(x)) − S1(x)): domain_gap over its raw figure, identity_kept\n"
    "\n| α | whole image | the person's change alone, background by G1 |\n|---|---|---|"
  )
  ratio = lambda s: s["domain_gap"] / s["domain_gap_raw"]
  along = []
  for alpha in alphas:
    whole, alone = score(blend(spatial, adapted, alpha)), score(blend(spatial, adapted, alpha, person))
    along.append((ratio(whole), whole["identity_kept"]))
    cell = lambda s: f"{ratio(s):.3f} / {s['identity_kept']:.3f}"
    print(f"| {alpha:.2f} | {cell(whole)} | {cell(alone)} |")
  if len(alphas) > 1:
    found = targets_along(alphas, *zip(*along))
    window = "at no level scored" if found["window"] is None else "for α in [{:.3f}, {:.3f}]".format(*found["window"])
    balance = "never" if found["balance"] is None else f"at α = {found['balance']:.3f}"
    print(
      f"\nWhole image, linear between the levels: gap ≤ {GAP_TARGET} × raw and identity_kept ≥ {KEPT_TARGET} "
      f"hold {window}; the two shortfalls are equal {balance}."
    )
  if not framed:
    print("\nNo framing: the source or the target has no person masks of its own.")
    return
  print(
    f"\nThe reframing map (output → input, normalised): x ↦ {affine[0, 0]:.3f} x + {affine[0, 2]:+.3f}, "
    f"y ↦ {affine[1, 1]:.3f} y + {affine[1, 2]:+.3f} (a scale under 1 zooms in).\n"
    f"\n| masks | {' | '.join(metrics.FRAMING)} | keystone | framing_gap |\n|---|{'---|' * (len(metrics.FRAMING) + 2)}"
  )
  framings = {"source": source_masks, "S1(x)": mask}
  if mean_warp is not None:
    framings["S1's mean warp"] = mean_warp[2]
  framings |= {"the source reframed": reframed[..., 3:], "target": target_masks}
  for name, masks in framings.items():
    means = " | ".join(f"{v:.3f}" for v in metrics.framing(masks).mean(0))
    keystone = np.nanmedian([viewpoints.mask_keystone(m[..., 0] > 0.5) for m in masks])  # as the stored alpha
    print(f"| {name} | {means} | {keystone:.3f} | {metrics.framing_gap(masks, target_masks):.5f} |")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
