"""The Inception-v3 network of FID (pytorch-fid's variant), in Flax, and its weights.

FID as the paper measures it (paper.md 1.6) is pytorch-fid's: the 2048 pool3 features of
`pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True,
use_fid_inception=True)`, whose weights are TensorFlow's 2015-12-05 Inception graph ported
to PyTorch. This module is that network for one batch of images, jit- and vmap-able:

  images [B, H, W, C] in [0, 1]
    -> clamp to [0, 1], round to 1/255 (the paper wrote 8-bit PNGs that pytorch-fid read)
    -> 1 channel tiled to 3 (PIL's `convert('RGB')` in pytorch-fid)
    -> bilinear resize to 299 x 299 (torch `F.interpolate`, align_corners=False, no antialias)
    -> 2 x - 1
    -> Inception-v3 up to Mixed_7c, global average pool -> [B, 2048]

The FID variant differs from torchvision's Inception-v3 in its blocks: the 3x3 average pools
of the A, C and E blocks leave the zero padding out of the average (TensorFlow's rule), and
the last E block (Mixed_7c) max-pools where the others average-pool. BatchNorm runs in
inference mode (eps = 1e-3) and is folded into the preceding convolution at load time,
so the network is a plain chain of conv + bias + ReLU.

Weights: pytorch-fid publishes `pt_inception-2015-12-05-6726825d.pth` (`FID_WEIGHTS_URL`;
pytorch-fid caches it under `$TORCH_HOME/hub/checkpoints/`). `load_inception_params(path)`
reads that file (needs torch) or its .npz conversion (needs only numpy), made once with

  python -m jaxdiff.metrics.inception --convert pt_inception-2015-12-05-6726825d.pth inception.npz

Usage:
  params = load_inception_params(path)
  feats = jax.jit(inception_features)(params, images)   # [B, 2048] float32
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import sys
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.errors import DataError

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME)
FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3  # torchvision's BasicConv2d
# Marks the .npz files written by `convert`: a pytorch-fid state dict, unchanged.
NPZ_FORMAT = "pytorch_fid_inception_state_dict_v1"
_HUB_NAME = re.compile(r"^pt_inception-2015-12-05-([0-9a-f]{8,})\.pth$")

Precision = Any


# ---------------------------------------------------------------------------- network


class _Conv(nn.Module):
  """torchvision's BasicConv2d with its BatchNorm folded in: conv + bias, then ReLU."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  pad: tuple[int, int] = (0, 0)
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    ph, pw = self.pad
    x = nn.Conv(self.features, self.kernel, strides=self.stride,
                padding=((ph, ph), (pw, pw)), use_bias=True,
                precision=self.precision, name="conv")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  # TensorFlow's SAME average pool: the zero padding does not count in the mean.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class _BlockA(nn.Module):
  """Mixed_5b/5c/5d (FIDInceptionA)."""
  pool_features: int
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_Conv, precision=self.precision)
    b1 = conv(64, (1, 1), name="branch1x1")(x)
    b5 = conv(48, (1, 1), name="branch5x5_1")(x)
    b5 = conv(64, (5, 5), pad=(2, 2), name="branch5x5_2")(b5)
    b3 = conv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = conv(96, (3, 3), pad=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = conv(96, (3, 3), pad=(1, 1), name="branch3x3dbl_3")(b3)
    bp = conv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class _BlockB(nn.Module):
  """Mixed_6a (InceptionB, unchanged in the FID variant): grid 35 -> 17."""
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_Conv, precision=self.precision)
    b3 = conv(384, (3, 3), stride=2, name="branch3x3")(x)
    bd = conv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = conv(96, (3, 3), pad=(1, 1), name="branch3x3dbl_2")(bd)
    bd = conv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class _BlockC(nn.Module):
  """Mixed_6b..6e (FIDInceptionC): factorised 7x7 convolutions."""
  channels_7x7: int
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_Conv, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name="branch1x1")(x)
    b7 = conv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = conv(c7, (1, 7), pad=(0, 3), name="branch7x7_2")(b7)
    b7 = conv(192, (7, 1), pad=(3, 0), name="branch7x7_3")(b7)
    bd = conv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = conv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_2")(bd)
    bd = conv(c7, (1, 7), pad=(0, 3), name="branch7x7dbl_3")(bd)
    bd = conv(c7, (7, 1), pad=(3, 0), name="branch7x7dbl_4")(bd)
    bd = conv(192, (1, 7), pad=(0, 3), name="branch7x7dbl_5")(bd)
    bp = conv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class _BlockD(nn.Module):
  """Mixed_7a (InceptionD, unchanged in the FID variant): grid 17 -> 8."""
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_Conv, precision=self.precision)
    b3 = conv(192, (1, 1), name="branch3x3_1")(x)
    b3 = conv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
    b7 = conv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = conv(192, (1, 7), pad=(0, 3), name="branch7x7x3_2")(b7)
    b7 = conv(192, (7, 1), pad=(3, 0), name="branch7x7x3_3")(b7)
    b7 = conv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class _BlockE(nn.Module):
  """Mixed_7b (FIDInceptionE_1, average pool) and Mixed_7c (FIDInceptionE_2, max pool)."""
  max_pool: bool
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_Conv, precision=self.precision)
    b1 = conv(320, (1, 1), name="branch1x1")(x)
    b3 = conv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name="branch3x3_2a")(b3),
                          conv(384, (3, 1), pad=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = conv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = conv(384, (3, 3), pad=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name="branch3x3dbl_3a")(bd),
                          conv(384, (3, 1), pad=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.max_pool:
      # The TF graph behind FID max-pools here (pytorch-fid's FIDInceptionE_2); padding
      # is -inf, so it never wins.
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = conv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(nn.Module):
  """pytorch-fid's FID Inception-v3 from the network input to pool3.

  Input: [B, H, W, 3] already scaled to [-1, 1] (H, W >= 75; 299 in FID). Output: [B, 2048].
  Parameter names follow the PyTorch module names (`Mixed_6b/branch7x7_2/conv/kernel`).
  """
  precision: Precision = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_Conv, precision=self.precision)
    p = self.precision
    x = conv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
    x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = conv(64, (3, 3), pad=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = _BlockA(32, precision=p, name="Mixed_5b")(x)
    x = _BlockA(64, precision=p, name="Mixed_5c")(x)
    x = _BlockA(64, precision=p, name="Mixed_5d")(x)
    x = _BlockB(precision=p, name="Mixed_6a")(x)
    x = _BlockC(128, precision=p, name="Mixed_6b")(x)
    x = _BlockC(160, precision=p, name="Mixed_6c")(x)
    x = _BlockC(160, precision=p, name="Mixed_6d")(x)
    x = _BlockC(192, precision=p, name="Mixed_6e")(x)
    x = _BlockD(precision=p, name="Mixed_7a")(x)
    x = _BlockE(max_pool=False, precision=p, name="Mixed_7b")(x)
    x = _BlockE(max_pool=True, precision=p, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))  # adaptive average pool to 1x1


# ---------------------------------------------------------------------- preprocessing


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of torch's bilinear interpolation along one axis.

  align_corners=False: output pixel i samples the input at s = (i + 0.5) in/out - 0.5,
  clamped below at 0 (torch's rule), between floor(s) and the next pixel (clamped to the
  last). No antialiasing, also when shrinking (torch's default). s is computed in float32
  as torch does: at 300 -> 299 its rounding moves weights by ~2e-5, which we reproduce.
  """
  f32 = np.float32
  scale = f32(in_size) / f32(out_size)
  src = np.maximum(scale * (np.arange(out_size, dtype=f32) + f32(0.5)) - f32(0.5), f32(0))
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = np.clip(src - lo.astype(f32), f32(0), f32(1))
  m = np.zeros((out_size, in_size), f32)
  np.add.at(m, (np.arange(out_size), lo), f32(1) - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m


def resize_bilinear(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Resizes [B, H, W, C] to [B, size[0], size[1], C] exactly as torch's F.interpolate.

  mode='bilinear', align_corners=False, antialias=False. Done as two small matrix products
  (the interpolation is separable), which is exact and cheap next to the network.
  """
  _, h, w, _ = images.shape
  if (h, w) == tuple(size):
    return images
  mh = jnp.asarray(_bilinear_matrix(h, size[0]))
  mw = jnp.asarray(_bilinear_matrix(w, size[1]))
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,bhwc->bowc", mh, images, precision=hp)
  return jnp.einsum("pw,bowc->bopc", mw, x, precision=hp)


def preprocess(images: jax.Array, *, quantize: bool = True,
               size: int | None = INPUT_SIZE) -> jax.Array:
  """Images in [0, 1] as the paper fed them to pytorch-fid -> network input in [-1, 1].

  Args:
    images: [B, H, W, C] with C in {1, 3}, nominally in [0, 1].
    quantize: round to multiples of 1/255 after clamping, as writing 8-bit PNGs does
      (torchvision's save_image: floor(255 x + 0.5)); pytorch-fid then reads x / 255.
    size: side of the network input (299 for FID); None keeps the size.

  Returns:
    [B, size, size, 3] float32 in [-1, 1].
  """
  x = jnp.clip(jnp.asarray(images, jnp.float32), 0.0, 1.0)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"expected images [B, H, W, 1 or 3], got shape {x.shape}")
  if quantize:
    x = jnp.floor(x * 255.0 + 0.5) / 255.0
  if x.shape[-1] == 1:
    x = jnp.tile(x, (1, 1, 1, 3))  # resizing commutes with tiling; tile first, simpler
  if size is not None:
    x = resize_bilinear(x, (size, size))
  return 2.0 * x - 1.0


def inception_features(params, images: jax.Array, *, quantize: bool = True,
                       size: int | None = INPUT_SIZE,
                       precision: Precision = jax.lax.Precision.HIGHEST) -> jax.Array:
  """pool3 features of pytorch-fid's FID Inception for images in [0, 1].

  Args:
    params: the Flax parameter tree from `load_inception_params` (or `params_from_state_dict`).
    images: [B, H, W, C], C in {1, 3}, values in [0, 1] (clamped here).
    quantize, size: see `preprocess`.
    precision: convolution precision. HIGHEST (the default) keeps float32 on GPUs/TPUs,
      where the default may use TF32/bfloat16 passes and move features by ~1e-3.

  Returns:
    [B, 2048] float32.
  """
  x = preprocess(images, quantize=quantize, size=size)
  return InceptionV3FID(precision=precision).apply({"params": params}, x)


# ---------------------------------------------------------------------------- weights


@functools.lru_cache(maxsize=1)
def _param_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
  """{path: shape} of the Flax parameters, from an abstract init (nothing is computed)."""
  tree = jax.eval_shape(
      lambda: InceptionV3FID().init(jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3))))
  flat = jax.tree_util.tree_flatten_with_path(tree["params"])[0]
  return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def params_from_state_dict(state_dict: Mapping[str, Any], source: str = "state dict"):
  """Flax parameters from a pytorch-fid FID-Inception state dict, BatchNorm folded in.

  Each BasicConv2d `P.conv.weight` [O, I, kh, kw] with `P.bn.{weight, bias, running_mean,
  running_var}` becomes `P/conv/kernel` [kh, kw, I, O] = weight * s and `P/conv/bias` =
  beta - mean * s, with s = gamma / sqrt(var + 1e-3) (inference-mode BatchNorm). Folding
  is done in float64. The classifier `fc.*` and `num_batches_tracked` are not needed.

  Raises:
    DataError: a tensor the network needs is missing or has the wrong shape.
  """
  sd = {k: np.asarray(v) for k, v in state_dict.items()}
  params: dict = {}
  for path, shape in _param_shapes().items():
    # ('Mixed_5b', 'branch1x1', 'conv', 'kernel') -> 'Mixed_5b.branch1x1'
    module = ".".join(path[:-2])
    names = [f"{module}.conv.weight"] + [
        f"{module}.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
    missing = [n for n in names if n not in sd]
    if missing:
      raise DataError(
          f"Inception weights {source} lack tensor {missing[0]!r}: expected pytorch-fid's "
          f"{WEIGHTS_FILENAME} (from {FID_WEIGHTS_URL}) or its .npz conversion.")
    w, gamma, beta, mean, var = (sd[n].astype(np.float64) for n in names)
    s = gamma / np.sqrt(var + BN_EPS)
    if path[-1] == "kernel":
      value = np.transpose(w * s[:, None, None, None], (2, 3, 1, 0))
    else:
      value = beta - mean * s
    if value.shape != shape:
      raise DataError(
          f"Inception weights {source}: tensor {names[0]!r} has shape {w.shape}, which does not "
          f"fit pytorch-fid's FID Inception (expected {WEIGHTS_FILENAME} from {FID_WEIGHTS_URL}).")
    node = params
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value.astype(np.float32)
  return params


def _missing_message(path: str, why: str) -> str:
  return (
      f"Inception weights file {path!r} {why}: FID needs pytorch-fid's {WEIGHTS_FILENAME} "
      f"(published at {FID_WEIGHTS_URL}; pytorch-fid keeps it under "
      f"$TORCH_HOME/hub/checkpoints/) or its .npz conversion (python -m "
      f"jaxdiff.metrics.inception --convert IN.pth OUT.npz); pass "
      f"--config.eval.inception_weights=PATH.")


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads pytorch-fid's .pth (needs torch) or a converted .npz into {name: array}.

  A file named like the published one (`pt_inception-2015-12-05-<hash>.pth`) must match its
  hash prefix, as torch.hub checks it: a truncated download is reported, not used.

  Raises:
    DataError: the file is missing, unreadable, truncated, or torch is needed but absent.
  """
  if not path:
    raise DataError(_missing_message("", "is not set (config key eval.inception_weights is empty)"))
  if not os.path.isfile(path):
    raise DataError(_missing_message(path, "does not exist"))
  name = os.path.basename(path)
  if name.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/ValueError/OSError: a damaged file
      raise DataError(_missing_message(path, f"could not be read as .npz ({e})")) from None
    if str(data.pop("__format__", "")) != NPZ_FORMAT:
      raise DataError(_missing_message(path, "is not a .npz written by this converter"))
    return data
  match = _HUB_NAME.match(name)
  if match and not _sha256(path).startswith(match.group(1)):
    raise DataError(_missing_message(path, "does not match the hash in its name (a partial "
                                           "download?)"))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError(
        f"Reading Inception weights {path!r} (.pth) needs torch: install it, or convert the "
        f"file once where torch is installed (python -m jaxdiff.metrics.inception --convert "
        f"IN.pth OUT.npz) and pass --config.eval.inception_weights=OUT.npz.") from None
  try:
    sd = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle/zip errors of a damaged file
    raise DataError(_missing_message(path, f"could not be read by torch.load ({e})")) from None
  if not isinstance(sd, Mapping):
    raise DataError(_missing_message(path, "does not hold a state dict"))
  return {k: v.detach().cpu().numpy() for k, v in sd.items() if hasattr(v, "detach")}


def load_inception_params(path: str):
  """Flax parameters of the FID Inception from pytorch-fid's .pth or a converted .npz.

  Raises:
    DataError: with a one-line message naming the expected file, where pytorch-fid publishes
      it and the config key to set.
  """
  return params_from_state_dict(read_state_dict(path), source=repr(path))


def convert(pth_path: str, npz_path: str) -> int:
  """Writes pytorch-fid's .pth state dict to an .npz that needs no torch to read.

  The tensors are stored unchanged (BatchNorm is folded when loading), with a format tag.
  The result is checked to build the network before it is written. Returns the tensor count.
  """
  from jaxdiff import fileio  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  sd = read_state_dict(pth_path)
  params_from_state_dict(sd, source=repr(pth_path))  # fail before writing anything
  sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
  buf = io.BytesIO()
  np.savez(buf, __format__=np.asarray(NPZ_FORMAT), **sd)
  fileio.atomic_write_bytes(npz_path, buf.getvalue())
  return len(sd)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m jaxdiff.metrics.inception",
      description="Convert pytorch-fid's Inception weights (.pth) to an .npz that jaxdiff "
                  "reads without torch.")
  parser.add_argument("--convert", nargs=2, metavar=("IN.pth", "OUT.npz"), required=True)
  args = parser.parse_args(argv)
  src, dst = args.convert
  try:
    n = convert(src, dst)
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {dst}: {n} tensors from {src} (sha256 {_sha256(dst)[:16]}...)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
