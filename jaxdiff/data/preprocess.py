"""The authors' torchvision image chain on numpy arrays: resize, centre-crop, grayscale.

Images (CelebA, CIFAR-10, any TFDS image dataset, the user's files) follow the authors'
torchvision chain `ToTensor -> Resize(S) -> CenterCrop(S) -> Grayscale(1)` on float
tensors: the shorter side is resized to S with an antialiased bilinear (triangle) filter,
then the centre S x S is cropped, then luma 0.2989 R + 0.587 G + 0.114 B (torchvision's
tensor weights). All three steps are linear in float arithmetic, so grayscale is applied
first (one channel to resize instead of 3): the result is the same up to float rounding.
"""

from __future__ import annotations

import numpy as np

# torchvision's Grayscale on float tensors (ITU-R 601-2 luma, R weight as torchvision has it).
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


def preprocess_images(images: np.ndarray, image_size: int, grayscale: bool) -> np.ndarray:
  """The authors' torchvision chain on uint8 images (module docstring).

  Args:
    images: [B, H, W, C] (C = 1 or 3), all the same size: uint8, or float on the same
      0..255 scale (16-bit and float image files, float arrays).
    image_size: S, the side after resizing the shorter side to S and center-cropping.
    grayscale: convert to one luma channel (LUMA_WEIGHTS).

  Returns:
    float32 [B, S, S, 1 or 3] in [0, 1].
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"expected [B, H, W, 1 or 3] images, got shape {images.shape}")
  b, h, w, c = images.shape
  x = images.astype(np.float32)  # values 0..255; the 1/255 is applied to the small result
  if grayscale and c == 3:
    x = (x.reshape(-1, 3) @ np.asarray(LUMA_WEIGHTS, np.float32)).reshape(b, h, w, 1)
  rows, cols = resize_crop_matrices(h, w, image_size)
  # Each contraction is one BLAS matrix product (tensordot reshapes around np.dot).
  x = np.tensordot(x, cols, axes=([2], [1]))  # [B, H, C, S]
  x = np.tensordot(rows, x, axes=([1], [1]))  # [S, B, C, S]
  # Divided (not multiplied by 1/255, which is inexact in float32): the quotient is
  # correctly rounded, so values that are exact on the 0..255 scale (e.g. the digits'
  # k/16 * 255) come back exactly when the resize is the identity.
  x = x.transpose(1, 0, 3, 2) / np.float32(255)  # [B, S, S, C]
  if not grayscale and c == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.ascontiguousarray(np.clip(x, 0.0, 1.0), dtype=np.float32)


def resize_crop_matrices(height: int, width: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Row and column matrices of torchvision's Resize(size) + CenterCrop(size).

  Resize (antialias=True, bilinear, align_corners=False) maps the shorter side to `size`
  and the longer to int(size * long / short); CenterCrop keeps rows/columns from
  int(round((new - size) / 2)). Both are linear, so the image is `rows @ x @ cols.T`.

  Returns:
    float32 `rows` [size, height] and `cols` [size, width].
  """
  if width <= height:
    new_w, new_h = size, int(size * height / width)
  else:
    new_h, new_w = size, int(size * width / height)
  top = int(round((new_h - size) / 2.0))
  left = int(round((new_w - size) / 2.0))
  rows = _resize_matrix(height, new_h)[top:top + size]
  cols = _resize_matrix(width, new_w)[left:left + size]
  return rows.astype(np.float32), cols.astype(np.float32)


def _resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of antialiased bilinear resizing (PIL / torch `antialias=True`).

  Output pixel i is centred at c_i = (i + 1/2) * s in input coordinates, s = in/out.
  When shrinking (s > 1) the triangle filter is stretched by s so that every input
  pixel contributes (antialiasing): w_ij = max(0, 1 - |j + 1/2 - c_i| / max(s, 1)),
  normalised over j (which also renormalises at the borders).
  """
  scale = in_size / out_size
  centers = (np.arange(out_size) + 0.5) * scale
  dist = np.abs(np.arange(in_size)[None, :] + 0.5 - centers[:, None]) / max(scale, 1.0)
  weights = np.maximum(0.0, 1.0 - dist)
  return weights / weights.sum(axis=1, keepdims=True)
