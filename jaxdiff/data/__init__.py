"""Datasets of a jaxdiff sweep: one module per source, one registry entry per dataset.

  from jaxdiff import data
  source = data.source_for(config.data.dataset)   # kind, labelled, default_quality, ...
  source.check(config.data)                        # its own keys (validation)
  source.shape(config.data)                        # one item's shape, no data (the planner)
  dataset = data.load_dataset(config.data, max_pool=needed, reference=r)
  data.check_subsets(dataset, config.data.n_train, config.data.index)
  train = dataset.pool[i * n:(i + 1) * n]
  centered = train - data.train_mean(train)

Modules: registry (DatasetSource, register, source_for, names, load_dataset), dataset (the
Dataset type, the ordered pool / test / reference split, subsets, centering, the readers
of config.data keys), preprocess (the paper's resize / crop / grayscale), and the sources:
digits, synthetic (gmm, gaussian), tfds_images (celeb_a, cifar10, tfds:NAME, the block
cache), files (folder, npz, npy at data.path) with image_files (reading a user's images,
also for `python -m jaxdiff.audit`).
"""

from jaxdiff.data.dataset import Dataset
from jaxdiff.data.dataset import check_subsets
from jaxdiff.data.dataset import train_mean
from jaxdiff.data.registry import DatasetSource
from jaxdiff.data.registry import load_dataset
from jaxdiff.data.registry import names
from jaxdiff.data.registry import register
from jaxdiff.data.registry import registered
from jaxdiff.data.registry import source_for
from jaxdiff.data.registry import unregister

# The built-in sources register themselves on import, in the order names() lists them.
from jaxdiff.data import digits  # pylint: disable=g-bad-import-order
from jaxdiff.data import synthetic
from jaxdiff.data import tfds_images
from jaxdiff.data import files

__all__ = ["Dataset", "DatasetSource", "check_subsets", "load_dataset", "names", "register",
           "registered", "source_for", "train_mean", "unregister"]
