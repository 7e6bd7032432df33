"""Image datasets of tensorflow-datasets: "celeb_a", "cifar10" and any "tfds:NAME".

celeb_a and cifar10 have fixed specs (the paper's natural order): CelebA in image-file
order 000001.jpg ... 202599.jpg (train, validation, test partitions), CIFAR-10 its train
split then its test split, with the class labels. Any other image dataset of TFDS is
`"tfds:NAME"` (NAME, NAME/CONFIG, NAME:VERSION as tfds.builder takes them): its splits
train, validation, test, then the others by name; its first Image feature; its "label"
ClassLabel when it has one. Images follow the paper's chain (jaxdiff.data.preprocess)
and are never upsampled beyond their native size.

The data come from tensorflow-datasets without TensorFlow, through `tfds.data_source`
(array_record files); data prepared as TFRecord are read with `tfds.load` machinery when
TensorFlow is importable. Nothing is downloaded: unprepared data are a one-line DataError
saying how to prepare them. The preprocessed arrays are cached in blocks of `CACHE_BLOCK`
images under `<tfds data_dir>/jaxdiff_cache/`, so a later run loads in seconds and
decodes only the blocks it needs (`max_pool`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np

from jaxdiff import errors
from jaxdiff import fileio
from jaxdiff.data import dataset as dataset_lib
from jaxdiff.data import preprocess
from jaxdiff.data import registry

TFDS_PREFIX = "tfds:"
# Images per cache file; also the unit of decoding work handed to the progress bar.
CACHE_BLOCK = 4096
# Images decoded and preprocessed together by one worker thread.
_DECODE_CHUNK = 64
# Bump when the preprocessing changes, so that stale caches are not reused.
_PIPELINE_VERSION = 2  # 2: division by 255 instead of a product with 1/255


@dataclasses.dataclass(frozen=True)
class _TfdsSpec:
  splits: tuple[str, ...]  # concatenated in this order to form the natural order
  native_hw: tuple[int, int]
  label_key: str | None
  by_filename: bool  # recover the image-file order from TFDS's key hashes (celeb_a)
  how_to_prepare: str
  official_lengths: tuple[int, ...] | None
  image_key: str = "image"


_TFDS = {
    "celeb_a": _TfdsSpec(
        splits=("train", "validation", "test"), native_hw=(218, 178), label_key=None,
        by_filename=True,
        how_to_prepare=(
            "prepare it once with `tfds build celeb_a --data_dir={data_dir} "
            "--file_format=array_record` (building needs TensorFlow, `pip install "
            "tensorflow-cpu`; if Google Drive refuses the download, put img_align_celeba.zip, "
            "list_eval_partition.txt, list_attr_celeba.txt, list_landmarks_align_celeba.txt "
            "and identity_CelebA.txt in a folder and add --manual_dir=FOLDER)"),
        official_lengths=(162770, 19867, 19962)),
    "cifar10": _TfdsSpec(
        splits=("train", "test"), native_hw=(32, 32), label_key="label", by_filename=False,
        how_to_prepare=(
            "prepare it once with `tfds build cifar10 --data_dir={data_dir} "
            "--file_format=array_record` (building needs TensorFlow, `pip install "
            "tensorflow-cpu`)"),
        official_lengths=(50000, 10000)),
}


_HOW_TO_PREPARE = ("prepare it once with `tfds build {name} --data_dir={{data_dir}} "
                   "--file_format=array_record` (building needs TensorFlow, `pip install "
                   "tensorflow-cpu`)")
# Splits concatenated in this order for the natural order (others after, sorted by name).
_SPLIT_ORDER = ("train", "validation", "test")


def _tfds_spec(name: str, data_dir: str) -> _TfdsSpec:
  """How to read `name` ("celeb_a", "cifar10" or "tfds:NAME") from TFDS.

  celeb_a and cifar10 have fixed specs (the paper's order). Any other image dataset is
  described from its builder: the splits it has (train, validation, test first, then the
  others by name; train + test when the builder does not list them yet), the first Image
  feature ("image" when present), and the "label" ClassLabel when it has one.
  """
  tfds_name = name[len(TFDS_PREFIX):] if name.startswith(TFDS_PREFIX) else name
  if tfds_name in _TFDS:
    return _TFDS[tfds_name]
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.DataError(
        f"data.dataset = {name!r} needs tensorflow-datasets: pip install tensorflow-datasets "
        "(or the package's tfds extra)") from e
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir or None)
  except Exception as e:  # pylint: disable=broad-except  (DatasetNotFoundError and kin)
    raise errors.ConfigError("data.dataset", name,
                             f"a tensorflow-datasets name after {TFDS_PREFIX!r} "
                             f"({str(e).splitlines()[0]})") from None
  features = builder.info.features
  images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  if not images:
    raise errors.ConfigError("data.dataset", name,
                             f"an image dataset: {tfds_name} has no Image feature "
                             f"(features: {', '.join(features)})")
  image_key = "image" if "image" in images else images[0]
  shape = features[image_key].shape
  label = features["label"] if "label" in features else None
  label_key = "label" if isinstance(label, tfds.features.ClassLabel) else None
  listed = list(builder.info.splits)
  splits = ([s for s in _SPLIT_ORDER if s in listed]
            + sorted(s for s in listed if s not in _SPLIT_ORDER)) or ["train", "test"]
  return _TfdsSpec(splits=tuple(splits), native_hw=(shape[0], shape[1]), label_key=label_key,
                   by_filename=False, how_to_prepare=_HOW_TO_PREPARE.format(name=tfds_name),
                   official_lengths=None, image_key=image_key)


def _data_dir(cfg) -> str:
  data_dir = dataset_lib.value(cfg, "tfds_data_dir") or ""
  if not isinstance(data_dir, str):
    raise errors.ConfigError("data.tfds_data_dir", data_dir, "a directory path ('' = TFDS default)")
  return os.path.expanduser(data_dir)


def _image_size(cfg, name: str, native_hw) -> int:
  """data.image_size, at most the native size when the dataset has one (no upsampling)."""
  fixed = [v for v in native_hw if v is not None]
  return dataset_lib.integer(
      cfg, "image_size", minimum=1, maximum=min(fixed) if fixed else None,
      extra=(f" ({name} images are {native_hw[0]}x{native_hw[1]}; they are not upsampled)")
      if fixed else "")


def _check(name: str, native_hw, cfg) -> None:
  _data_dir(cfg)
  _image_size(cfg, name, native_hw)
  dataset_lib.boolean(cfg, "grayscale")


def _load_tfds(name, cfg, *, num_test, order_seed, max_pool, reference) -> dataset_lib.Dataset:
  """Loads celeb_a, cifar10 or tfds:NAME (checked) through the block cache."""
  data_dir = _data_dir(cfg)
  spec = _tfds_spec(name, data_dir)
  tfds_name = name[len(TFDS_PREFIX):] if name.startswith(TFDS_PREFIX) else name
  size = _image_size(cfg, name, spec.native_hw)
  grayscale = dataset_lib.boolean(cfg, "grayscale")
  source = _open_tfds(tfds_name, spec, data_dir)
  natural = _natural_order(spec, source)
  total = len(natural.split)
  dataset_lib.check_num_test(num_test, total, name)
  order = dataset_lib.natural_or_seeded(total, order_seed)
  pool_idx, ref_idx, test_idx = dataset_lib.split(order, num_test, max_pool, reference)
  root = data_dir or _default_tfds_dir()
  cache = _BlockCache(root, tfds_name.replace("/", "-").replace(":", "-"), source, spec,
                      size, grayscale, natural.rule)
  n_pool = len(pool_idx)
  n_ref = 0 if ref_idx is None else len(ref_idx)
  images, labels = cache.gather(
      np.concatenate([pool_idx] + ([] if ref_idx is None else [ref_idx]) + [test_idx]), natural)
  pool_labels = test_labels = None
  if labels is not None:
    pool_labels, test_labels = labels[:n_pool], labels[n_pool + n_ref:]
  return dataset_lib.Dataset(
      name=name, kind="image", pool=images[:n_pool], test=images[n_pool + n_ref:],
      reference=None if ref_idx is None else images[n_pool:n_pool + n_ref],
      pool_labels=pool_labels, test_labels=test_labels,
      metadata={"source": f"tfds:{tfds_name}", "version": source.version, "num_total": total,
                "split_lengths": dict(zip(spec.splits, source.lengths)),
                "order": natural.rule, "order_seed": order_seed, "image_size": size,
                "grayscale": grayscale, "pool_available": total - num_test,
                **dataset_lib.reference_metadata(ref_idx, total - num_test)})


def _default_tfds_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                      "tensorflow_datasets"))


class _TfdsSource:
  """The prepared splits of one TFDS dataset: random access (array_record) or a stream."""

  def __init__(self, splits: Sequence[Any], lengths: Sequence[int], version: str,
               shuffled: bool, random_access: bool):
    self._splits = list(splits)
    self.lengths = [int(n) for n in lengths]
    self.version = version
    self.shuffled = shuffled  # stored in md5(key) order (TFDS's default) or generation order
    self.random_access = random_access

  def get(self, split: int, positions: Sequence[int]) -> list[dict]:
    source = self._splits[split]
    return [source[int(p)] for p in positions]

  def stream(self, split: int) -> Iterator[dict]:
    return iter(self._splits[split]())


@contextlib.contextmanager
def _quiet_tfds():
  """TFDS's own warnings (absl's logger: "Variant folder ... has no dataset_info.json" twice
  for an unprepared dataset) off while jaxdiff looks for the data: it explains a missing
  dataset itself, in one line."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


def _open_tfds(name, spec, data_dir) -> _TfdsSource:
  """Opens the prepared splits without downloading; a clear DataError when they are missing."""
  with _quiet_tfds():
    return _open_tfds_quietly(name, spec, data_dir)


def _open_tfds_quietly(name, spec, data_dir) -> _TfdsSource:
  shown_dir = data_dir or _default_tfds_dir()
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.DataError(
        f"data.dataset = {name!r} needs tensorflow-datasets: pip install tensorflow-datasets "
        "(or the package's tfds extra)") from e
  tfds_dir = data_dir or None
  try:
    sources = [tfds.data_source(name, split=s, data_dir=tfds_dir, download=False)
               for s in spec.splits]
  except Exception as e:  # pylint: disable=broad-except
    # Diagnosed below: not prepared (fail fast, never download) or prepared as TFRecord.
    failure = e
  else:
    info = getattr(sources[0], "dataset_info", None)
    return _TfdsSource(sources, [len(s) for s in sources], str(getattr(info, "version", "")),
                       shuffled=not getattr(info, "disable_shuffling", False),
                       random_access=True)
  builder = tfds.builder(name, data_dir=tfds_dir)
  where = (f"data.tfds_data_dir = {data_dir!r}" if data_dir else
           f"the TFDS default data_dir {shown_dir} (data.tfds_data_dir is empty)")
  if not builder.is_prepared():
    raise errors.DataError(
        f"TFDS dataset {name} is not prepared in {where}: "
        + spec.how_to_prepare.format(data_dir=shown_dir)
        + ", or set data.tfds_data_dir to the folder where it is prepared.") from failure
  if str(getattr(builder.info.file_format, "value", "")) == "tfrecord":
    if importlib.util.find_spec("tensorflow") is None:
      raise errors.DataError(
          f"TFDS dataset {name} in {where} is prepared as TFRecord, which only TensorFlow "
          "reads: pip install tensorflow-cpu, or rebuild it with "
          f"`tfds build {name} --data_dir={shown_dir} --file_format=array_record`.") from failure
    return _tfrecord_source(tfds, builder, spec)
  raise failure


def _tfrecord_source(tfds, builder, spec) -> _TfdsSource:
  """Sequential reading of TFRecord files through tf.data (needs TensorFlow)."""

  def opener(split):
    def stream():
      ds = builder.as_dataset(split=split, shuffle_files=False,
                              read_config=tfds.ReadConfig(interleave_cycle_length=1))
      return tfds.as_numpy(ds)
    return stream

  lengths = [builder.info.splits[s].num_examples for s in spec.splits]
  return _TfdsSource([opener(s) for s in spec.splits], lengths, str(builder.info.version),
                     shuffled=not builder.info.disable_shuffling, random_access=False)


@dataclasses.dataclass(frozen=True)
class _NaturalOrder:
  """Where natural item g is stored: split[g], position[g]; and the rule that was used."""

  split: np.ndarray
  position: np.ndarray
  rule: str


def _natural_order(spec: _TfdsSpec, source: _TfdsSource) -> _NaturalOrder:
  """Maps the natural order (splits concatenated, CelebA by file name) to stored positions.

  TFDS writes a split sorted by md5(split name + example key) (tfds.core.hashing; stable
  by design, changing it would bump every dataset's major version). The CelebA builder's
  keys are the file names 000001.jpg ... 202599.jpg and its splits are contiguous ranges
  of them (list_eval_partition: train, validation, test in that order). So the k-th file
  of a split sits at the rank of its key hash: sorting by hash recovers the authors'
  natsorted file order without a file-name feature.
  """
  if spec.official_lengths is not None and tuple(source.lengths) != spec.official_lengths:
    logging.warning("TFDS splits %s have %s examples, not the official %s%s.", spec.splits,
                    source.lengths, spec.official_lengths,
                    ": the file-name order assumes contiguous partitions of 000001.jpg..."
                    if spec.by_filename else "")
  splits, positions = [], []
  offset = 0
  for s, (split_name, length) in enumerate(zip(spec.splits, source.lengths)):
    pos = np.arange(length)
    if spec.by_filename and source.shuffled:
      salt = hashlib.md5(split_name.encode("utf-8"))
      hashes = []
      for k in range(offset + 1, offset + length + 1):
        h = salt.copy()
        h.update(f"{k:06d}.jpg".encode("utf-8"))
        hashes.append(h.hexdigest())
      pos = np.empty(length, np.int64)
      pos[np.argsort(np.asarray(hashes), kind="stable")] = np.arange(length)
    splits.append(np.full(length, s, np.int64))
    positions.append(pos)
    offset += length
  rule = "file name" if spec.by_filename else "tfds splits " + " + ".join(spec.splits)
  return _NaturalOrder(np.concatenate(splits), np.concatenate(positions), rule)


class _BlockCache:
  """Preprocessed images in natural order, cached as .npz blocks of CACHE_BLOCK items."""

  def __init__(self, root, name, source, spec, size, grayscale, rule):
    self._source, self._spec = source, spec
    self._size, self._grayscale = size, grayscale
    self._channels = 1 if grayscale else 3
    key = {"dataset": name, "version": source.version, "lengths": source.lengths,
           "image_size": size, "grayscale": grayscale, "order": rule,
           "pipeline": _PIPELINE_VERSION, "block": CACHE_BLOCK}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    self.directory = os.path.join(root, "jaxdiff_cache",
                                  f"{name}-{source.version or 'x'}-{size}px-"
                                  f"{'gray' if grayscale else 'rgb'}-{digest}")
    self._key = key
    self._total = sum(source.lengths)

  def _path(self, block):
    return os.path.join(self.directory, f"block-{block:05d}.npz")

  def _block_range(self, block):
    return block * CACHE_BLOCK, min((block + 1) * CACHE_BLOCK, self._total)

  def _read(self, block):
    """A cached block, or None when missing or unreadable (it is then rebuilt)."""
    try:
      with np.load(self._path(block)) as f:
        images = f["images"]
        labels = f["labels"] if "labels" in f.files else None
    except (OSError, ValueError, KeyError):
      return None
    start, stop = self._block_range(block)
    if images.shape != (stop - start, self._size, self._size, self._channels):
      return None
    return images, labels

  def _write(self, block, images, labels):
    buf = io.BytesIO()
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez(buf, **arrays)
    try:
      fileio.atomic_write_bytes(self._path(block), buf.getvalue())
      fileio.atomic_write_json(os.path.join(self.directory, "key.json"), self._key)
    except OSError as e:  # a read-only data_dir: carry on without a cache
      logging.warning("Could not write the image cache %s (%s); continuing without it.",
                      self.directory, e)

  def gather(self, indices: np.ndarray, natural: _NaturalOrder):
    """Images [len(indices), S, S, C] (and labels) of the given natural indices."""
    indices = np.asarray(indices, np.int64)
    needed = np.unique(indices // CACHE_BLOCK)
    blocks = {}
    for b in needed:
      got = self._read(int(b))
      if got is not None:
        blocks[int(b)] = got
    missing = [int(b) for b in needed if int(b) not in blocks]
    if missing:
      blocks.update(self._decode(missing, natural))
    has_labels = self._spec.label_key is not None
    images = np.empty((len(indices), self._size, self._size, self._channels), np.float32)
    labels = np.empty((len(indices),), np.int32) if has_labels else None
    for b, (block_images, block_labels) in blocks.items():
      sel = np.nonzero(indices // CACHE_BLOCK == b)[0]
      local = indices[sel] - b * CACHE_BLOCK
      images[sel] = block_images[local]
      if has_labels:
        labels[sel] = block_labels[local]
    return images, labels

  def _decode(self, missing: list[int], natural: _NaturalOrder) -> dict:
    """Decodes and preprocesses the missing blocks, writing each to the cache."""
    import tqdm  # pylint: disable=g-import-not-at-top

    count = sum(stop - start for start, stop in map(self._block_range, missing))
    logging.info("Decoding %d images of %s into %s", count, self._key["dataset"], self.directory)
    if not self._source.random_access:
      # A sequential source is read once in full; every block is then cached.
      missing = list(range(-(-self._total // CACHE_BLOCK)))
      count = self._total
    out = {}
    with tqdm.tqdm(total=count, desc=f"preprocessing {self._key['dataset']}", unit="img",
                   mininterval=2.0) as bar:
      if self._source.random_access:
        workers = min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
          for b in missing:
            start, stop = self._block_range(b)
            chunks = [np.arange(i, min(i + _DECODE_CHUNK, stop))
                      for i in range(start, stop, _DECODE_CHUNK)]
            parts = []
            for part in pool.map(lambda c: self._decode_natural(c, natural), chunks):
              parts.append(part)
              bar.update(len(part[0]))
            images = np.concatenate([p[0] for p in parts])
            labels = (np.concatenate([p[1] for p in parts])
                      if self._spec.label_key else None)
            self._write(b, images, labels)
            out[b] = (images, labels)
      else:
        images, labels = self._decode_stream(natural, bar)
        for b in missing:
          start, stop = self._block_range(b)
          block_labels = None if labels is None else labels[start:stop]
          self._write(b, images[start:stop], block_labels)
          out[b] = (images[start:stop], block_labels)
    return out

  def _preprocess(self, examples: list[dict]):
    """float32 images (grouped by input size, order kept) and int32 labels of examples."""
    images = np.empty((len(examples), self._size, self._size, self._channels), np.float32)
    shapes = [np.shape(ex[self._spec.image_key]) for ex in examples]
    for shape in set(shapes):
      sel = [i for i, s in enumerate(shapes) if s == shape]
      batch = np.stack([examples[i][self._spec.image_key] for i in sel])
      if batch.ndim == 3:  # [B, H, W] single-channel
        batch = batch[..., None]
      images[sel] = preprocess.preprocess_images(batch, self._size, self._grayscale)
    labels = None
    if self._spec.label_key:
      labels = np.asarray([ex[self._spec.label_key] for ex in examples], np.int32)
    return images, labels

  def _decode_natural(self, natural_indices, natural: _NaturalOrder):
    splits = natural.split[natural_indices]
    positions = natural.position[natural_indices]
    examples = [None] * len(natural_indices)
    for s in np.unique(splits):
      sel = np.nonzero(splits == s)[0]
      for i, ex in zip(sel, self._source.get(int(s), positions[sel])):
        examples[i] = ex
    return self._preprocess(examples)

  def _decode_stream(self, natural: _NaturalOrder, bar):
    """Reads every split in stored order and places each item at its natural index."""
    images = np.empty((self._total, self._size, self._size, self._channels), np.float32)
    labels = np.empty((self._total,), np.int32) if self._spec.label_key else None
    to_natural = {}
    for s in range(len(self._source.lengths)):
      sel = np.nonzero(natural.split == s)[0]
      inverse = np.empty(len(sel), np.int64)
      inverse[natural.position[sel]] = sel
      to_natural[s] = inverse
    for s in range(len(self._source.lengths)):
      batch, start = [], 0
      for ex in self._source.stream(s):
        batch.append(ex)
        if len(batch) == _DECODE_CHUNK:
          start = self._place(batch, to_natural[s], start, images, labels, bar)
          batch = []
      if batch:
        start = self._place(batch, to_natural[s], start, images, labels, bar)
      if start != self._source.lengths[s]:
        raise errors.DataError(
            f"TFDS split {self._spec.splits[s]} of {self._key['dataset']} yielded {start} "
            f"examples where its dataset_info.json says {self._source.lengths[s]}: "
            "rebuild the dataset with `tfds build`.")
    return images, labels

  def _place(self, batch, to_natural, start, images, labels, bar):
    target = to_natural[start:start + len(batch)]
    batch_images, batch_labels = self._preprocess(batch)
    images[target] = batch_images
    if labels is not None:
      labels[target] = batch_labels
    bar.update(len(batch))
    return start + len(batch)


# ---------------------------------------------------------------------- the registry


def _source(name: str, spec, description: str) -> registry.DatasetSource:
  """The registry entry of a TFDS image dataset: labelled when `spec` names a label, its
  native size checked against the config (the prepared data may say more: checked on load)."""
  labelled = spec.label_key is not None
  return registry.DatasetSource(
      name=name, kind="image", labelled=labelled,
      default_quality="classifier_fd" if labelled else "pixel_fd",
      item_shape=dataset_lib.image_shape,
      checks=functools.partial(_check, name, spec.native_hw),
      loader=lambda cfg, **kw: _load_tfds(name, cfg, **kw), description=description)


CELEB_A = registry.register(
    _source("celeb_a", _TFDS["celeb_a"], "CelebA, in image-file order (TFDS)"))
CIFAR10 = registry.register(
    _source("cifar10", _TFDS["cifar10"], "CIFAR-10, train then test split (TFDS)"))

# TFDS names: NAME, NAME/CONFIG, NAME:VERSION (as tfds.builder takes them).
_TFDS_NAME = re.compile(r"[a-z0-9_]+(/[A-Za-z0-9_.-]+)?(:[0-9.]+)?")


@functools.lru_cache(maxsize=None)
def _resolve(name: str) -> registry.DatasetSource:
  """The source of "tfds:NAME": labelled when the builder has a "label" ClassLabel.

  Asks the TFDS builder for its features (code, not data: nothing is read or downloaded),
  so that the planner knows the labels and quality metric before anything is loaded.
  """
  tfds_name = name[len(TFDS_PREFIX):]
  if _TFDS_NAME.fullmatch(tfds_name) is None:
    raise errors.ConfigError("data.dataset", name, f"one of {registry.names()}")
  if tfds_name in _TFDS:
    return registry.source_for(tfds_name)  # "tfds:celeb_a" is celeb_a
  return _source(name, _tfds_spec(name, ""), f"{tfds_name} of tensorflow-datasets")


TFDS = registry.register(registry.DatasetSource(
    name=TFDS_PREFIX, kind="image", labelled=False, default_quality="pixel_fd",
    item_shape=dataset_lib.image_shape, loader=None, prefix=True,
    resolve=_resolve, description="an image dataset of tensorflow-datasets"))
