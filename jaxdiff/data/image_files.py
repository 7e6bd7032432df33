"""Images from a user's files: a folder of image files, or an array in a .npz / .npy file.

  images = load_images("samples/", image_size=32, grayscale=True)
  images.pixels        # float32 [N, S, S, C] in [0, 1]
  images.description   # "1,000 PNG files from samples/ (recursively), resized ..."

A folder is read recursively (PNG, JPEG, BMP, TIFF), in the order of the files' paths
relative to it (sorted), so the same folder always gives the same order. An array file
holds [N, H, W, C] or [N, C, H, W] (C = 1, 3 or 4; told apart by where the channel axis
is, and stated) or [N, H, W] grayscale images, uint8 (0..255) or float ([0, 1], or
[-1, 1] when it has negative values, or 0..255 when its maximum is above 1.5). Image
files are 8-bit (value / 255), 16-bit grayscale (value / 65535) or float TIFF ([0, 1]).

Preprocessing is the paper's CelebA chain (jaxdiff.data.preprocess.preprocess_images):
with `image_size` S, the shorter side is resized to S (antialiased bilinear) and the
centre S x S kept; `grayscale` converts to one luma channel. Without `image_size` every
image must already have one size. Alpha channels are dropped.

Every problem with the files (a missing path, an empty folder, an unreadable or
truncated image, mixed sizes without `image_size`, an array of the wrong shape) is a
DataError whose one line names the file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from jaxdiff.data import preprocess
from jaxdiff.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_EXTENSIONS = (".npz", ".npy")
# Keys tried, in order, in a .npz holding several arrays.
NPZ_KEYS = ("images", "samples", "x", "arr_0")


@dataclasses.dataclass(frozen=True)
class Images:
  """Preprocessed images and how they were obtained."""
  pixels: np.ndarray        # float32 [N, H, W, C] in [0, 1], C = 1 or 3
  description: str          # one sentence: source, count, layout, preprocessing
  files: tuple[str, ...]    # the image files in order (empty for an array file)


def list_image_files(folder: str) -> list[str]:
  """The image files under `folder` (recursively), sorted by their path relative to it."""
  found = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    for name in names:
      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
        found.append(os.path.relpath(os.path.join(root, name), folder))
  return [os.path.join(folder, rel) for rel in sorted(found)]


# One-channel modes of more than 8 bits (16-bit PNG / TIFF) and float TIFF, with the
# factor that puts them on the 0..255 scale: 16-bit full scale is 65535, float is [0, 1].
_WIDE_MODES = {"I;16": 255.0 / 65535.0, "I;16L": 255.0 / 65535.0, "I;16B": 255.0 / 65535.0,
               "I": 255.0 / 65535.0, "F": 255.0}


def _read_file(path: str) -> np.ndarray:
  """One image file as [H, W, C] on the 0..255 scale, C = 1 or 3.

  8-bit files give uint8. 16-bit grayscale files (PNG, TIFF) give float32 value * 255 /
  65535, and float TIFFs (mode F, values in [0, 1]) float32 value * 255, so that neither
  is cut to 8 bits: a float TIFF of exact values (e.g. the digits' k/16) reaches
  `preprocess_images` exactly.
  """
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.load()  # decodes now: a truncated file fails here, not later
      if im.mode in _WIDE_MODES:
        scale = _WIDE_MODES[im.mode]
        return np.ascontiguousarray(np.asarray(im, np.float32)[..., None] * np.float32(scale))
      if im.mode in ("1", "L"):
        arr = np.asarray(im.convert("L"))[..., None]
      else:
        arr = np.asarray(im.convert("RGB"))
  except (OSError, ValueError, SyntaxError) as e:
    raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
  return np.ascontiguousarray(arr, dtype=np.uint8)


def _check_not_upsampled(shapes: Sequence[tuple[int, ...]], names: Sequence[str],
                         image_size: int) -> None:
  """One line naming the first image smaller than image_size (it is not upsampled)."""
  for shape, name in zip(shapes, names):
    if min(shape[0], shape[1]) < image_size:
      raise DataError(f"{name}: the image is {shape[0]}x{shape[1]}, smaller than "
                      f"data.image_size = {image_size} (images are not upsampled: lower "
                      "data.image_size or remove the small images)")


def _preprocess(groups: dict, count: int, image_size: int | None,
                grayscale: bool | None) -> tuple[np.ndarray, str]:
  """Resizes/crops same-size groups of uint8-scaled images and puts them back in order.

  Args:
    groups: {(h, w, c): (positions, [B, h, w, c] values 0..255)}.
  """
  channels = {shape[2] for shape in groups}
  if grayscale is None:
    grayscale = channels == {1}
  out = None
  for (_, _, c), (positions, values) in groups.items():
    if image_size is None:
      x = np.asarray(values, np.float32) / 255.0
      if grayscale and c == 3:
        x = x @ np.asarray(preprocess.LUMA_WEIGHTS, np.float32)
        x = x[..., None]
      elif not grayscale and c == 1:
        x = np.repeat(x, 3, axis=-1)
    else:
      x = preprocess.preprocess_images(values, image_size, grayscale)
    if out is None:
      out = np.zeros((count,) + x.shape[1:], np.float32)
    out[positions] = x
  steps = []
  if image_size is not None:
    steps.append(f"shorter side resized to {image_size} and centre-cropped to "
                 f"{image_size}x{image_size}")
  steps.append("grayscale (luma)" if grayscale else "RGB")
  return np.clip(out, 0.0, 1.0), ", ".join(steps)


def _group_by_shape(arrays: Sequence[np.ndarray], names: Sequence[str], image_size: int | None,
                    where: str) -> dict:
  groups: dict = {}
  for i, a in enumerate(arrays):
    groups.setdefault(a.shape, ([], []))
    groups[a.shape][0].append(i)
    groups[a.shape][1].append(a)
  sizes = {shape[:2] for shape in groups}
  if image_size is None:
    if len(sizes) > 1:
      other = next(i for i, a in enumerate(arrays) if a.shape[:2] != arrays[0].shape[:2])
      size = lambda a: f"{a.shape[0]}x{a.shape[1]}"
      raise DataError(
          f"{where}: images of different sizes ({names[0]} is {size(arrays[0])}, "
          f"{names[other]} is {size(arrays[other])}); give an image size to resize them to "
          "(--image_size, data.image_size)")
    (h, w), = sizes
    if h != w:
      raise DataError(f"{where}: images are {h}x{w}, not square; give an image size to "
                      "resize and centre-crop them to (--image_size, data.image_size)")
  return {shape: (np.asarray(pos), np.stack(vals)) for shape, (pos, vals) in groups.items()}


def read_image_folder(folder: str, image_size: int | None = None,
                      grayscale: bool | None = None, upsample: bool = True) -> Images:
  """Every image file under `folder`, in sorted path order, preprocessed (module docstring)."""
  files = list_image_files(folder)
  if not files:
    raise DataError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this "
                    "folder or below it")
  arrays = [_read_file(f) for f in files]
  if image_size is not None and not upsample:
    _check_not_upsampled([a.shape for a in arrays], files, image_size)
  groups = _group_by_shape(arrays, files, image_size, folder)
  pixels, steps = _preprocess(groups, len(files), image_size, grayscale)
  kinds = sorted({os.path.splitext(f)[1].lower().lstrip(".").upper() for f in files})
  return Images(pixels, f"{len(files):,} {'/'.join(kinds)} files from {folder} "
                        f"(recursively, sorted by path); {steps}", tuple(files))


def _layout(array: np.ndarray, path: str) -> tuple[np.ndarray, str]:
  """[N, H, W, C] from NHWC, NCHW or NHW; the layout found, in words."""
  if array.ndim == 3:
    return array[..., None], "[N, H, W] grayscale"
  if array.ndim != 4:
    raise DataError(f"{path}: an array of shape {array.shape}; expected images as "
                    "[N, H, W, C], [N, C, H, W] or [N, H, W]")
  last, second = array.shape[-1], array.shape[1]
  if last in (1, 3, 4):
    return array, "NHWC"
  if second in (1, 3, 4):
    return np.moveaxis(array, 1, -1), "NCHW (channels moved last)"
  raise DataError(f"{path}: an array of shape {array.shape} has no channel axis of size 1, "
                  "3 or 4 (expected [N, H, W, C] or [N, C, H, W])")


def _to_255(array: np.ndarray, path: str) -> tuple[np.ndarray, str]:
  """Values on the 0..255 scale, and the value range found, in words."""
  if array.dtype == np.uint8:
    return array.astype(np.float32), "uint8"
  if not np.issubdtype(array.dtype, np.number):
    raise DataError(f"{path}: an array of dtype {array.dtype}; expected uint8 or float images")
  x = np.asarray(array, np.float32)
  if not np.all(np.isfinite(x)):
    raise DataError(f"{path}: the array has non-finite values (NaN or inf)")
  lo, hi = float(x.min()), float(x.max())
  if lo < 0.0:
    return (x + 1.0) * 127.5, f"{array.dtype} in [-1, 1]"
  if hi > 1.5:
    return x, f"{array.dtype} on 0..255"
  return x * 255.0, f"{array.dtype} in [0, 1]"


def read_image_array(path: str, image_size: int | None = None,
                     grayscale: bool | None = None, upsample: bool = True) -> Images:
  """Images stored as one array in a .npz (key images/samples/x/arr_0) or .npy file."""
  try:
    if path.endswith(".npz"):
      with np.load(path) as z:
        keys = list(z.keys())
        key = keys[0] if len(keys) == 1 else next((k for k in NPZ_KEYS if k in keys), None)
        if key is None:
          raise DataError(f"{path}: holds arrays {keys}; expected one array, or one named "
                          f"{' / '.join(NPZ_KEYS)}")
        array = z[key]
    else:
      array = np.load(path, allow_pickle=False)
  except DataError:
    raise
  except (OSError, ValueError, EOFError) as e:
    raise DataError(f"{path}: not a readable numpy array file ({type(e).__name__}: "
                    f"{e})") from None
  if array.shape[0] == 0:
    raise DataError(f"{path}: the array holds no images (shape {array.shape})")
  array, layout = _layout(array, path)
  values, value_range = _to_255(array, path)
  if values.shape[-1] == 4:  # RGBA: the alpha channel is dropped
    values = values[..., :3]
  h, w = values.shape[1:3]
  if image_size is not None and not upsample:
    _check_not_upsampled([values.shape[1:]], [path], image_size)
  if image_size is None and h != w:
    raise DataError(f"{path}: images are {h}x{w}, not square; give an image size to resize "
                    "and centre-crop them to (--image_size, data.image_size)")
  groups = {values.shape[1:]: (np.arange(values.shape[0]), values)}
  pixels, steps = _preprocess(groups, values.shape[0], image_size, grayscale)
  return Images(pixels, f"{values.shape[0]:,} images from {path} (layout {layout}, "
                        f"{value_range}); {steps}", ())


def load_images(path: str, image_size: int | None = None,
                grayscale: bool | None = None, upsample: bool = True) -> Images:
  """A folder of image files or a .npz / .npy array file (module docstring).

  Args:
    path: the folder or file.
    image_size: resize the shorter side to this and centre-crop (None: keep the size; all
      images must then have one square size).
    grayscale: True: one luma channel; False: RGB; None: grayscale only if every image is.
    upsample: False: refuse (one line naming it) an image smaller than image_size.

  Returns:
    Images with float32 pixels [N, H, W, C] in [0, 1].
  """
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file or folder")
  if os.path.isdir(path):
    return read_image_folder(path, image_size, grayscale, upsample)
  if path.lower().endswith(ARRAY_EXTENSIONS):
    return read_image_array(path, image_size, grayscale, upsample)
  if path.lower().endswith(IMAGE_EXTENSIONS):
    raise DataError(f"{path}: a single image file; give the folder that holds the images")
  raise DataError(f"{path}: expected a folder of images or a .npz / .npy array file")
