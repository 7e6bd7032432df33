"""data.dataset = "digits": scikit-learn's bundled 8x8 digits (1797 images, 10 classes).

Values 0..16 (scikit-learn's integer counts) scaled by 1/16, exact in float32; natural
order: scikit-learn's. The images are not resized: `data.image_size` must be 8
(upsampling an 8x8 digit adds no information, only cost) and `data.grayscale` True.
"""

from __future__ import annotations

import numpy as np

from jaxdiff import errors
from jaxdiff.data import dataset as dataset_lib
from jaxdiff.data import registry

SIZE = 8


def _check(cfg) -> None:
  size = dataset_lib.value(cfg, "image_size")
  if size != SIZE:
    raise errors.ConfigError("data.image_size", size, "8 for digits (8x8 images, not resized)")
  gray = dataset_lib.value(cfg, "grayscale")
  if not gray:
    raise errors.ConfigError("data.grayscale", gray, "True for digits (one-channel images)")


def _load(cfg, *, num_test, order_seed, max_pool, reference) -> dataset_lib.Dataset:
  del cfg  # checked: nothing else to read
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top

  digits = sk_datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1]
  labels = digits.target.astype(np.int32)
  return dataset_lib.from_arrays("digits", images, labels, num_test, order_seed, max_pool,
                                 reference, {"source": "sklearn.datasets.load_digits"})


SOURCE = registry.register(registry.DatasetSource(
    name="digits", kind="image", labelled=True, default_quality="classifier_fd",
    item_shape=lambda cfg: (SIZE, SIZE, 1), loader=_load,
    checks=_check, description="scikit-learn's 8x8 digits"))
