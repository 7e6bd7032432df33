"""The registry of datasets: one `DatasetSource` per value of `data.dataset`.

A source declares everything the rest of jaxdiff asks about a dataset: its kind (image or
vector), whether it has labels, which quality metric `eval.quality = "auto"` means for it,
the shape of one item from the config alone (the planner's question), its own checks of
the `config.data` keys (validation's question) and its loader (the trainer's). Adding a
dataset is one module that calls `register` and a config that names it:

  register(DatasetSource(name="rings", kind="vector", labelled=False,
                         default_quality="pixel_fd", item_shape=lambda cfg: (2,),
                         loader=load_rings, checks=check_rings))
  dataset = load_dataset(config.data)           # config.data.dataset = "rings"

A *prefix* source ("tfds:" for any image dataset of tensorflow-datasets) answers for every
name that starts with its prefix: its `resolve(name)` returns the source of that one name.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from jaxdiff import errors
from jaxdiff.data import dataset as dataset_lib

KINDS = ("image", "vector")
# What eval.quality = "auto" can mean without Inception weights (with them it is "fid").
DEFAULT_QUALITIES = ("gmm", "classifier_fd", "pixel_fd")


@dataclasses.dataclass(frozen=True)
class DatasetSource:
  """One value of `data.dataset` and what it is.

  Attributes:
    name: the `data.dataset` value; for a prefix source the prefix (e.g. "tfds:").
    kind: "image" ([N, H, W, C] in [0, 1]) or "vector" ([N, d]).
    labelled: the Dataset has pool_labels / test_labels (classes, or the GMM's component).
    default_quality: what eval.quality = "auto" is without Inception weights: "gmm" (the
      exact mixture's KL), "classifier_fd" (a classifier trained on the labelled pool) or
      "pixel_fd".
    item_shape: data_cfg -> the shape of one item, from the config alone.
    loader: (data_cfg, *, num_test, order_seed, max_pool, reference) -> Dataset, called
      after `check`; num_test and order_seed are already read and checked.
    checks: data_cfg -> None, raising a ConfigError naming the key: the checks of this
      source's own keys that need no data (None: none beyond num_test and order_seed).
    description: what the source reads, in a few words (for messages and docs).
    prefix: `name` is a prefix; `resolve` gives the source of one full name.
    resolve: for a prefix source, full name -> its DatasetSource (ConfigError naming
      data.dataset when the name is not one it can load).
  """

  name: str
  kind: str
  labelled: bool
  default_quality: str
  item_shape: Callable
  loader: Callable
  checks: Callable | None = None
  description: str = ""
  prefix: bool = False
  resolve: Callable | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"DatasetSource {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
    if self.default_quality not in DEFAULT_QUALITIES:
      raise ValueError(f"DatasetSource {self.name!r}: default_quality "
                       f"{self.default_quality!r} is not one of {DEFAULT_QUALITIES}")
    if self.default_quality == "classifier_fd" and not self.labelled:
      raise ValueError(f"DatasetSource {self.name!r}: classifier_fd needs labels")
    if self.prefix and self.resolve is None:
      raise ValueError(f"DatasetSource {self.name!r}: a prefix source needs resolve")

  def shape(self, data_cfg) -> tuple[int, ...]:
    """The shape of one item (e.g. (32, 32, 1) or (8,)), from the config alone."""
    return tuple(int(v) for v in self.item_shape(data_cfg))

  def check(self, data_cfg) -> None:
    """Checks every data key this source reads that can be checked without the data."""
    dataset_lib.common_keys(data_cfg)
    if self.checks is not None:
      self.checks(data_cfg)

  def load(self, data_cfg, *, max_pool: int | None = None,
           reference: int = 0) -> dataset_lib.Dataset:
    """Loads this dataset as an ordered pool and a held-out test set (see load_dataset)."""
    if max_pool is not None and (isinstance(max_pool, bool) or int(max_pool) != max_pool
                                 or max_pool < 1):
      raise ValueError(f"max_pool must be a positive integer or None, got {max_pool!r}")
    if not dataset_lib.is_int(reference) or reference < 0:
      raise ValueError(f"reference must be a non-negative integer, got {reference!r}")
    self.check(data_cfg)
    num_test, order_seed = dataset_lib.common_keys(data_cfg)
    return self.loader(data_cfg, num_test=num_test, order_seed=order_seed, max_pool=max_pool,
                       reference=reference)


_SOURCES: dict[str, DatasetSource] = {}


def register(source: DatasetSource) -> DatasetSource:
  """Adds a source (a new name, or a new prefix); returns it."""
  if not isinstance(source, DatasetSource):
    raise TypeError(f"register expects a DatasetSource, got {type(source).__name__}")
  if source.name in _SOURCES:
    raise ValueError(f"a dataset source {source.name!r} is already registered")
  _SOURCES[source.name] = source
  return source


def unregister(name: str) -> None:
  """Removes a registered source (tests that register their own take it out again)."""
  del _SOURCES[name]


def registered() -> tuple[DatasetSource, ...]:
  """Every registered source: plain names in registration order, then prefixes."""
  plain = [s for s in _SOURCES.values() if not s.prefix]
  return tuple(plain + [s for s in _SOURCES.values() if s.prefix])


def names() -> str:
  """The allowed values of data.dataset, in words (for messages)."""
  plain = [s.name for s in registered() if not s.prefix]
  prefixed = [f"{s.name}NAME ({s.description})" for s in registered() if s.prefix]
  return ", ".join(plain) + "".join(f", or {p}" for p in prefixed)


def source_for(name) -> DatasetSource:
  """The source of a `data.dataset` value; a ConfigError naming data.dataset when unknown."""
  if isinstance(name, str):
    if name in _SOURCES and not _SOURCES[name].prefix:
      return _SOURCES[name]
    for source in registered():
      if source.prefix and name.startswith(source.name):
        return source.resolve(name)
  raise errors.ConfigError("data.dataset", name, f"one of {names()}")


def load_dataset(data_cfg, *, max_pool: int | None = None,
                 reference: int = 0) -> dataset_lib.Dataset:
  """Loads `data_cfg.dataset` as an ordered pool and a held-out test set.

  Args:
    data_cfg: `config.data` (the keys of configs/base.py's data block that the source
      reads: dataset, num_test, order_seed and its own).
    max_pool: at most this many pool items are returned (the first ones); None = all.
      For the TFDS images only the cache blocks holding the needed images are decoded.
    reference: hold out the last `reference` items of the pool order as
      `Dataset.reference` (they leave `pool`); ignored (reference None) when the pool
      has no more than `reference` items.

  Returns:
    A `Dataset`.

  Raises:
    ConfigError: a data key has a value that is not allowed.
    DataError: the data are missing or unreadable (the message says what to do).
  """
  return source_for(dataset_lib.value(data_cfg, "dataset")).load(
      data_cfg, max_pool=max_pool, reference=reference)
