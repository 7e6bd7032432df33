"""The user's own images as a dataset: data.dataset = "folder", "npz" or "npy", at data.path.

Read by jaxdiff.data.image_files (also what `python -m jaxdiff.audit` reads). Natural
order: a folder's files sorted by their path relative to it; an array's own order.
Preprocessing: the paper's CelebA chain (jaxdiff.data.preprocess) to data.image_size,
grayscale per data.grayscale; images smaller than data.image_size are refused (not
upsampled), as for the TFDS datasets. No labels.
"""

from __future__ import annotations

import os

from jaxdiff import errors
from jaxdiff.data import dataset as dataset_lib
from jaxdiff.data import image_files
from jaxdiff.data import registry

# What data.path must be for each of these datasets.
WHAT = {"folder": "a folder of PNG/JPEG/BMP/TIFF files (read recursively)",
        "npz": "a .npz file holding one image array (or one named images/x/...)",
        "npy": "a .npy file holding an image array"}


def _check(name, cfg) -> None:
  path = dataset_lib.value(cfg, "path")
  if not isinstance(path, str) or not path:
    raise errors.ConfigError("data.path", path,
                             f"the path of {WHAT[name]} for data.dataset = {name!r}")
  dataset_lib.image_keys(cfg)


def _load(name, cfg, *, num_test, order_seed, max_pool, reference) -> dataset_lib.Dataset:
  path = os.path.expanduser(dataset_lib.value(cfg, "path"))
  size, grayscale = dataset_lib.image_keys(cfg)
  if not os.path.exists(path):
    raise errors.DataError(f"{path}: no such file or folder (data.path, data.dataset = "
                           f"{name!r} reads {WHAT[name]})")
  if name == "folder" and not os.path.isdir(path):
    raise errors.DataError(f"{path}: not a folder (data.dataset = 'folder' reads "
                           f"{WHAT[name]}; use 'npz' / 'npy' for array files)")
  if name != "folder" and not (os.path.isfile(path) and path.lower().endswith("." + name)):
    raise errors.DataError(f"{path}: not a .{name} file (data.dataset = {name!r} reads "
                           f"{WHAT[name]})")
  images = image_files.load_images(path, image_size=size, grayscale=grayscale, upsample=False)
  return dataset_lib.from_arrays(name, images.pixels, None, num_test, order_seed, max_pool,
                                 reference, {"source": images.description, "path": path,
                                             "image_size": size, "grayscale": grayscale})


def _source(name: str) -> registry.DatasetSource:
  return registry.register(registry.DatasetSource(
      name=name, kind="image", labelled=False, default_quality="pixel_fd",
      item_shape=dataset_lib.image_shape,
      checks=lambda cfg: _check(name, cfg),
      loader=lambda cfg, **kw: _load(name, cfg, **kw), description=WHAT[name]))


FOLDER, NPZ, NPY = _source("folder"), _source("npz"), _source("npy")
