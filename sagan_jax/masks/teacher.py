"""Pseudo-label teacher: MediaPipe's selfie-segmentation model on letterboxed person crops.

The model file (Apache-2.0) ships inside the PyPI wheel ``mediapipe==0.10.14`` at `MODEL_IN_WHEEL`
(newer wheels do not ship it). mediapipe itself is never installed (it pins numpy<2):
`fetch_model` downloads the wheel with ``pip download --no-deps``, takes the file out of the zip,
and the model runs on the TFLite runtime ``ai-edge-litert`` (`requirements-masks.txt`). The core
package never imports this module.

Input: 1×256×256×3 float in [0, 1]; output: 1×256×256×1 person probability. A 2:1 re-ID crop is
letterboxed (scaled to fit, centred, zero padding) rather than stretched, so people keep their
proportions; the probability map is cropped back and resized to the crop.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

from sagan_jax.masks import infer, sources

MEDIAPIPE_WHEEL = "mediapipe==0.10.14"
MODEL_IN_WHEEL = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
INPUT_SIZE = 256


@dataclasses.dataclass(frozen=True)
class Letterbox:
  """Where a ``height × width`` image sits inside the square: scaled to ``inner_hw`` at (top, left)."""

  height: int
  width: int
  inner_hw: tuple[int, int]
  top: int
  left: int


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
  """uint8 ``[H, W, 3]`` → float32 ``[size, size, 3]`` in [0, 1] (fit, centred, zeros around) and its placement."""
  h, w = image.shape[:2]
  scale = min(size / h, size / w)
  inner = (max(1, round(h * scale)), max(1, round(w * scale)))
  top, left = (size - inner[0]) // 2, (size - inner[1]) // 2
  boxed = np.zeros((size, size, 3), np.float32)
  resized = Image.fromarray(image).resize((inner[1], inner[0]), Image.BILINEAR)
  boxed[top : top + inner[0], left : left + inner[1]] = np.asarray(resized, np.float32) / 255.0
  return boxed, Letterbox(h, w, inner, top, left)


def unletterbox(prob: np.ndarray, box: Letterbox) -> np.ndarray:
  """A ``[size, size]`` map over the letterboxed square → ``[H, W]`` over the original image."""
  inner = np.ascontiguousarray(
    prob[box.top : box.top + box.inner_hw[0], box.left : box.left + box.inner_hw[1]], np.float32
  )
  return np.asarray(Image.fromarray(inner, mode="F").resize((box.width, box.height), Image.BILINEAR))


def fetch_model(dest_dir: str) -> str:
  """Downloads the mediapipe 0.10.14 wheel (no dependencies) and extracts the model; returns its path."""
  path = os.path.join(dest_dir, os.path.basename(MODEL_IN_WHEEL))
  if os.path.isfile(path):
    return path
  os.makedirs(dest_dir, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(
      [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", MEDIAPIPE_WHEEL, "-d", tmp],
      check=True,
    )
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
      raise RuntimeError(f"pip download {MEDIAPIPE_WHEEL} gave {wheels}, expected one wheel")
    with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
      data = wheel.read(MODEL_IN_WHEEL)
  with open(path + ".tmp", "wb") as f:
    f.write(data)
  os.replace(path + ".tmp", path)
  return path


class SelfieTeacher:
  """``teacher(uint8 [H, W, 3]) → person probability [H, W]`` with MediaPipe's selfie segmenter."""

  def __init__(self, model_path: str):
    try:
      from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415  (optional dependency)
    except ImportError as e:
      raise ImportError("the mask teacher needs the TFLite runtime: pip install -r requirements-masks.txt") from e
    self._interpreter = Interpreter(model_path=model_path)
    self._interpreter.allocate_tensors()
    self._input = self._interpreter.get_input_details()[0]["index"]
    self._output = self._interpreter.get_output_details()[0]["index"]

  def probability_square(self, boxed: np.ndarray) -> np.ndarray:
    self._interpreter.set_tensor(self._input, boxed[None].astype(np.float32))
    self._interpreter.invoke()
    return self._interpreter.get_tensor(self._output)[0, ..., 0]

  def __call__(self, image: np.ndarray) -> np.ndarray:
    boxed, box = letterbox(image)
    return unletterbox(self.probability_square(boxed), box)


def label(teacher: Callable[[np.ndarray], np.ndarray], data_dir: str, out_dir: str) -> dict[str, int]:
  """Writes the teacher's thresholded masks for every image under ``data_dir`` without one in ``out_dir``."""
  todo, done = infer.pending(data_dir, out_dir)
  for name in todo:
    prob = teacher(sources.decode_image(os.path.join(data_dir, name), "RGB"))
    infer.write_mask(sources.mask_path_for(out_dir, name), prob > 0.5)
  return {"written": len(todo), "skipped": done}
