"""Tests of the sample / nearest-neighbour PNG grids."""

import os

import matplotlib.image as mpimg
import numpy as np
import pytest

from jaxdiff.findings import grids

_RED = np.array([0.85, 0.1, 0.1])


def _checkerboard(h, w):
  return ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2).astype(np.float32)


def test_grid_file_size_and_known_images(tmp_path):
  rng = np.random.default_rng(0)
  rows, cols, h, w = 2, 3, 16, 16
  samples = rng.random((rows, cols, h, w, 1)).astype(np.float32)
  neighbours = rng.random((rows, cols, h, w, 1)).astype(np.float32)
  samples[1, 2, :, :, 0] = _checkerboard(h, w)
  neighbours[0, 1, :, :, 0] = 1.0 - _checkerboard(h, w)
  ratios = np.array([[0.05, 0.5, np.nan], [0.9, 0.2, 0.34]])
  path = str(tmp_path / "sub" / "grid.png")
  layout = grids.save_sample_grid(path, samples, neighbours, ratios, 1 / 3,
                                  ["run 0: n=8", "run 1: n=32"], "step 100", scale=4)
  image = mpimg.imread(path)  # float RGBA in [0, 1]
  assert image.shape[:2] == layout.size
  # 2 * margin + 3 cells of (2 * 64 + gap + 2 * frame + cell margin) - cell margin.
  assert layout.size[1] == 2 * 8 + 3 * (2 * 64 + 2 + 2 * 3 + 6) - 6
  # The known images appear pixel for pixel (4x nearest-neighbour upscaling).
  up = lambda img: np.repeat(np.repeat(img, 4, axis=0), 4, axis=1)
  y0, x0, y1, x1 = layout.sample_boxes[1][2]
  np.testing.assert_allclose(image[y0:y1, x0:x1, :3], up(samples[1, 2]).repeat(3, -1), atol=1 / 255)
  y0, x0, y1, x1 = layout.neighbour_boxes[0][1]
  np.testing.assert_allclose(image[y0:y1, x0:x1, :3],
                             up(neighbours[0, 1]).repeat(3, -1), atol=1 / 255)
  # Copies (ratio < k) are framed in red, the others not.
  for (r, g), framed in {(0, 0): True, (1, 1): True, (0, 1): False, (0, 2): False,
                         (1, 2): False}.items():
    y0, x0, _, _ = layout.sample_boxes[r][g]
    corner = image[y0 - 2, x0 - 2, :3]
    assert np.allclose(corner, _RED, atol=2 / 255) == framed, (r, g, corner)
  # No temporary file is left behind.
  assert os.listdir(tmp_path / "sub") == ["grid.png"]


def test_rgb_and_bad_shapes(tmp_path):
  rng = np.random.default_rng(1)
  samples = rng.random((1, 2, 8, 8, 3))
  layout = grids.save_sample_grid(str(tmp_path / "rgb.png"), samples, samples,
                                  np.array([[0.1, 0.8]]), 0.5, ["rgb"], "t")
  image = mpimg.imread(str(tmp_path / "rgb.png"))
  y0, x0, y1, x1 = layout.neighbour_boxes[0][1]
  s = (y1 - y0) // 8
  np.testing.assert_allclose(image[y0:y1:s, x0:x1:s, :3], samples[0, 1], atol=1 / 255)
  with pytest.raises(ValueError, match="ratios"):
    grids.save_sample_grid(str(tmp_path / "x.png"), samples, samples, np.zeros(2), 0.5,
                           ["a"], "t")
  with pytest.raises(ValueError, match="row titles"):
    grids.save_sample_grid(str(tmp_path / "x.png"), samples, samples, np.zeros((1, 2)), 0.5,
                           [], "t")


def test_step_grid_writes_png(tmp_path):
  # The trainer's per-step grid: samples/step_<step>.png through save_sample_grid (the
  # directory is created; a NaN ratio, a sample never compared, is drawn unframed).
  rng = np.random.default_rng(2)
  samples = rng.random((2, 2, 8, 8, 1))
  png = str(tmp_path / "samples" / "step_000001200.png")
  layout = grids.save_sample_grid(png, samples, samples, np.array([[0.1, 0.5], [np.nan, 0.2]]),
                                  1 / 3, ["n=8 seed=0", "n=64 seed=1"], "step 1200")
  assert os.path.exists(png) and os.listdir(tmp_path / "samples") == ["step_000001200.png"]
  image = mpimg.imread(png)
  assert image.shape[:2] == layout.size
  y0, x0, _, _ = layout.sample_boxes[1][0]
  assert not np.allclose(image[y0 - 2, x0 - 2, :3], _RED, atol=2 / 255)
  y0, x0, _, _ = layout.sample_boxes[0][0]
  assert np.allclose(image[y0 - 2, x0 - 2, :3], _RED, atol=2 / 255)
