"""PNG grids of generated samples beside their nearest training images (paper Fig. 2 right, Fig. 6).

One row per run; each cell is a pair (generated sample | nearest training image) with the
gap ratio ||x - a1|| / ||x - a2|| written under it. Pairs that count as copies
(ratio < k, paper eq. 6) get a red frame and a red label ending in " *".

Images are drawn pixel-exactly: the whole canvas is one RGB array (tiles upscaled by an
integer factor, nearest neighbour) placed 1:1 with `figimage`, and matplotlib only adds
the text, so a figure of W x H pixels is exactly that PNG size. Files are written
atomically.

Usage:

  save_sample_grid("grid.png", samples, neighbours, ratios, k=1/3,
                   row_titles=["n=1024 seed 0"], title="step 1620000")
"""

from __future__ import annotations

import io
import math
import os
from typing import NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

from jaxdiff import fileio

_DPI = 100
_TITLE_H = 38      # pixels of the figure title band (title and legend lines)
_MIN_WIDTH = 420   # room for the legend line
_ROW_TITLE_H = 18  # pixels of the text line above each row
_LABEL_H = 16      # pixels of the ratio label under each pair
_FRAME = 3         # frame width around a pair (red when memorized)
_GAP = 2           # gap between the sample and its neighbour
_CELL_MARGIN = 6   # space between cells
_MARGIN = 8        # outer margin
_RED = np.array([0.85, 0.1, 0.1])


class GridLayout(NamedTuple):
  """Pixel geometry of a grid: size (height, width) and [R][G] boxes (y0, x0, y1, x1)."""
  size: tuple[int, int]
  sample_boxes: list
  neighbour_boxes: list


def _to_rgb(images: np.ndarray) -> np.ndarray:
  """[..., H, W, C] with C in {1, 3} -> float RGB clipped to [0, 1]."""
  images = np.asarray(images, np.float32)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if images.shape[-1] != 3:
    raise ValueError(f"images must have 1 or 3 channels, got shape {images.shape}")
  return np.clip(np.nan_to_num(images, nan=0.0), 0.0, 1.0)


def _scale_for(h: int, w: int, target: int = 64) -> int:
  """Integer upscaling so that a tile is about `target` pixels (never below 1)."""
  return max(1, int(round(target / max(h, w))))


def _fmt(k: float) -> str:
  for denom in (2, 3, 4, 5, 10):
    if abs(k * denom - round(k * denom)) < 1e-9:
      return f"{int(round(k * denom))}/{denom}"
  return f"{k:.3g}"


def render_sample_grid(samples, neighbours, ratios, k: float, row_titles: Sequence[str],
                       title: str, scale: int | None = None) -> tuple[bytes, GridLayout]:
  """Renders the grid to PNG bytes (see `save_sample_grid`) and returns its layout."""
  samples, neighbours = _to_rgb(samples), _to_rgb(neighbours)
  ratios = np.asarray(ratios, np.float64)
  if samples.ndim != 5 or samples.shape != neighbours.shape:
    raise ValueError(f"samples and neighbours must both be [R, G, H, W, C], got "
                     f"{samples.shape} and {neighbours.shape}")
  rows, cols, h, w, _ = samples.shape
  if ratios.shape != (rows, cols):
    raise ValueError(f"ratios must be [R, G] = {(rows, cols)}, got {ratios.shape}")
  if len(row_titles) != rows:
    raise ValueError(f"{rows} rows but {len(row_titles)} row titles")
  s = scale or _scale_for(h, w)
  th, tw = h * s, w * s
  pair_w = 2 * tw + _GAP
  cell_w = pair_w + 2 * _FRAME + _CELL_MARGIN
  row_h = _ROW_TITLE_H + th + 2 * _FRAME + _LABEL_H
  width = max(_MIN_WIDTH, 2 * _MARGIN + cols * cell_w - _CELL_MARGIN)
  height = _TITLE_H + rows * row_h + _MARGIN
  canvas = np.ones((height, width, 3), np.float32)

  def up(img):
    return np.repeat(np.repeat(img, s, axis=0), s, axis=1)

  sample_boxes, neighbour_boxes, labels = [], [], []
  for r in range(rows):
    y = _TITLE_H + r * row_h + _ROW_TITLE_H + _FRAME
    sample_boxes.append([])
    neighbour_boxes.append([])
    for g in range(cols):
      x = _MARGIN + g * cell_w + _FRAME
      copy = bool(ratios[r, g] < k)  # NaN (no neighbour) is never a copy
      if copy:
        canvas[y - _FRAME:y + th + _FRAME, x - _FRAME:x + pair_w + _FRAME] = _RED
        canvas[y:y + th, x:x + pair_w] = 1.0
      canvas[y:y + th, x:x + tw] = up(samples[r, g])
      x2 = x + tw + _GAP
      canvas[y:y + th, x2:x2 + tw] = up(neighbours[r, g])
      sample_boxes[r].append((y, x, y + th, x + tw))
      neighbour_boxes[r].append((y, x2, y + th, x2 + tw))
      text = "n/a" if not math.isfinite(ratios[r, g]) else f"{ratios[r, g]:.3f}"
      labels.append((x + pair_w / 2, y + th + _FRAME + 2, text + (" *" if copy else ""), copy))

  fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
  fig.figimage(canvas, xo=0, yo=0, origin="upper", resize=False)
  put = lambda x, y, text, **kw: fig.text(x / width, 1.0 - y / height, text, **kw)
  put(_MARGIN, 4, title, ha="left", va="top", fontsize=10)
  put(_MARGIN, 20, f"generated | nearest training image; gap ratio below; "
      f"red, *: ratio < {_fmt(k)}", ha="left", va="top", fontsize=7)
  for r, row_title in enumerate(row_titles):
    put(_MARGIN, _TITLE_H + r * row_h + 2, row_title, ha="left", va="top", fontsize=8,
        fontweight="bold")
  for x, y, text, copy in labels:
    put(x, y, text, ha="center", va="top", fontsize=7, color=_RED if copy else "black")
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=_DPI)
  return buf.getvalue(), GridLayout((height, width), sample_boxes, neighbour_boxes)


def save_sample_grid(path: str, samples, neighbours, ratios, k: float,
                     row_titles: Sequence[str], title: str,
                     scale: int | None = None) -> GridLayout:
  """Writes a PNG grid of samples beside their nearest training images, atomically.

  Args:
    path: the PNG file.
    samples: [R, G, H, W, C] generated images, un-centered, in [0, 1] (C = 1 or 3).
    neighbours: [R, G, H, W, C] their nearest training images, same range.
    ratios: [R, G] gap ratios (NaN shows "n/a").
    k: the memorization threshold (pairs with ratio < k are marked).
    row_titles: R labels (e.g. "run 3: n=1024 seed=0").
    title: the figure title (e.g. the step).
    scale: integer upscaling of the tiles (default: tiles of about 64 pixels).

  Returns:
    The pixel layout of the written image.
  """
  data, layout = render_sample_grid(samples, neighbours, ratios, k, row_titles, title, scale)
  fileio.atomic_write_bytes(path, data)
  return layout


def save_gap_ratio_histogram(path: str, ratios, heldout_ratios=None,
                             ks: Sequence[float] = (1 / 3,)) -> None:
  """Histogram of the gap ratios of samples (and of held-out real images), with each k.

  Ratios near 0 are copies (a sample much closer to one training image than to any
  other); generalizing samples and real held-out images sit near 1. Written as PNG at
  `path` and as PDF beside it.
  """
  bins = np.linspace(0.0, 1.0, 51)
  fig = Figure(figsize=(6.4, 3.6), dpi=_DPI)
  ax = fig.subplots()
  for values, label, color in ((ratios, "generated samples", "C0"),
                               (heldout_ratios, "held-out real images", "C1")):
    if values is None:
      continue
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    ax.hist(values, bins=bins, density=True, histtype="stepfilled" if color == "C0" else "step",
            alpha=0.45 if color == "C0" else 1.0, color=color, lw=1.5,
            label=f"{label} ({values.size:,})")
  for j, k in enumerate(ks):
    ax.axvline(k, color=_RED if j == 0 else "gray", ls="-" if j == 0 else ":", lw=1.2,
               label=f"k = {_fmt(k)}" + (" (copies to its left)" if j == 0 else ""))
  ax.set_xlim(0, 1)
  ax.set_xlabel("gap ratio ||x - a1|| / ||x - a2||")
  ax.set_ylabel("density")
  ax.legend(fontsize=8, loc="upper left")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=_DPI)
  fileio.atomic_write_bytes(path, buf.getvalue())
  buf = io.BytesIO()
  fig.savefig(buf, format="pdf")
  fileio.atomic_write_bytes(os.path.splitext(path)[0] + ".pdf", buf.getvalue())
