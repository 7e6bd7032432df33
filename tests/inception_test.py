"""The Flax FID Inception against pytorch-fid's own module, with random weights.

pytorch-fid's `InceptionV3(use_fid_inception=True)` downloads its weights inside
`fid_inception_v3()`. Here the download function returns nothing and the inner network's
`load_state_dict` is intercepted, so pytorch-fid's own code builds the FID network with
PyTorch's random initialisation and nothing is fetched. BatchNorm statistics are then made
non-trivial (calibrated on a batch, plus random affine parameters), the state dict is
saved under pytorch-fid's key names and loaded by jaxdiff from .pth and from .npz.
"""

import os
from unittest import mock

import jax
import numpy as np
import pytest

from jaxdiff.errors import DataError
from jaxdiff.metrics import fid
from jaxdiff.metrics import inception


# ------------------------------------------------------------ preprocessing (no torch)


def test_bilinear_matrix_rows_are_convex_weights():
  for n_in, n_out in [(32, 299), (8, 299), (299, 299), (64, 29), (5, 3)]:
    m = inception._bilinear_matrix(n_in, n_out)
    assert m.shape == (n_out, n_in)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-6)
    assert (m >= 0).all()
  # Same size: identity; a constant image stays constant.
  np.testing.assert_array_equal(inception._bilinear_matrix(7, 7), np.eye(7, dtype=np.float32))


def test_preprocess_tiles_grayscale_and_quantizes_like_png():
  rng = np.random.default_rng(0)
  gray = rng.random((2, 10, 10, 1)).astype(np.float32) * 1.4 - 0.2  # outside [0, 1] too
  a = np.asarray(inception.preprocess(gray, size=None))
  b = np.asarray(inception.preprocess(np.repeat(gray, 3, axis=-1), size=None))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (2, 10, 10, 3)
  # Clamped to [0, 1], then on the 8-bit grid of torchvision's save_image, then 2x - 1.
  expect = 2 * np.floor(np.clip(gray, 0, 1) * 255 + 0.5) / 255 - 1
  np.testing.assert_allclose(a[..., :1], expect, atol=1e-6)
  with pytest.raises(ValueError):
    inception.preprocess(np.zeros((2, 10, 10, 2), np.float32))


def test_missing_weights_file_says_what_and_where(tmp_path):
  for path in ["", str(tmp_path / "nope.pth")]:
    with pytest.raises(DataError) as e:
      inception.load_inception_params(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert inception.WEIGHTS_FILENAME in msg and inception.FID_WEIGHTS_URL in msg
    assert "--config.eval.inception_weights=" in msg


def test_unreadable_or_wrong_weights_file(tmp_path):
  bad = tmp_path / "w.npz"
  bad.write_bytes(b"not a zip")
  with pytest.raises(DataError, match="could not be read"):
    inception.load_inception_params(str(bad))
  other = tmp_path / "other.npz"
  np.savez(other, a=np.zeros(3))
  with pytest.raises(DataError, match="not a .npz written by this converter"):
    inception.load_inception_params(str(other))
  # Right format tag, wrong content.
  partial = tmp_path / "partial.npz"
  np.savez(partial, __format__=np.asarray(inception.NPZ_FORMAT),
           **{"Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3), np.float32)})
  with pytest.raises(DataError, match="lack tensor 'Conv2d_1a_3x3.bn.weight'"):
    inception.load_inception_params(str(partial))
  # A file named like the published one must match the hash in its name.
  truncated = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  truncated.write_bytes(b"\x00" * 100)
  with pytest.raises(DataError, match="does not match the hash"):
    inception.load_inception_params(str(truncated))


# ------------------------------------------------------------- parity with pytorch-fid


def _random_pytorch_fid_model(seed=0):
  """pytorch-fid's InceptionV3([3], FID variant) with random weights, and its inner state dict."""
  import torch
  from pytorch_fid import inception as pfi

  built = []

  def capture(self, state_dict, *args, **kwargs):
    del state_dict, args, kwargs
    built.append(self)

  torch.manual_seed(seed)
  with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: {}), \
      mock.patch.object(pfi.torchvision.models.inception.Inception3, "load_state_dict", capture):
    model = pfi.InceptionV3([3], resize_input=True, normalize_input=True,
                            use_fid_inception=True)
  (net,) = built  # the network whose state dict pytorch-fid's .pth file holds

  # Random BatchNorm affine parameters, then running statistics measured on one batch of
  # the kind the tests feed (so activations stay O(1) through ~95 layers): folding
  # gamma, beta, mean and var into the convolutions is part of what is tested.
  bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for bn in bns:
      bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=g))
      bn.bias.copy_(0.2 * torch.randn(bn.num_features, generator=g))
      bn.momentum = None  # running stats = this batch's stats
      bn.reset_running_stats()
    # 32x32 images through the 299 resize, like the main parity test's: calibrating on
    # another resolution (smoothness) left features of ~1e8 there.
    model.train()
    model(torch.randint(0, 256, (2, 3, 32, 32), generator=g).float() / 255)
    # Channels that are nearly constant on smooth upsampled images get BatchNorm gains
    # up to 1/sqrt(eps) = 32 per layer; compounded, float32 torch itself then differed
    # from float64 torch by 1e-4. A floor on the variance keeps the random network as
    # well conditioned (float32 vs float64 torch: ~2e-7 of the largest feature).
    for bn in bns:
      bn.running_var.add_(0.1)
  model.eval()
  return model, net.state_dict()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  pytest.importorskip("pytorch_fid")
  import torch
  model, state_dict = _random_pytorch_fid_model()
  d = tmp_path_factory.mktemp("inception")
  pth = str(d / "pt_inception-2015-12-05-randominit.pth")  # not the hub's hash: no check
  torch.save(state_dict, pth)
  return model, state_dict, pth, inception.load_inception_params(pth), d


def _torch_pool3(model, images_nhwc):
  import torch
  x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
  with torch.no_grad():
    return model(x)[0][:, :, 0, 0].numpy().astype(np.float64)


def _assert_features_close(ours, ref):
  scale = np.abs(ref).max()
  assert np.isfinite(ref).all() and ref.std() > 1e-3 * scale > 0  # a non-degenerate network
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.torch
@pytest.mark.slow
def test_resize_matches_torch_interpolate():
  import torch
  rng = np.random.default_rng(1)
  for h, w, out in [(32, 32, 299), (64, 40, 29), (300, 301, 299)]:
    x = rng.random((2, h, w, 3)).astype(np.float32)
    ours = np.asarray(inception.resize_bilinear(x, (out, out)))
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(out, out), mode="bilinear",
        align_corners=False).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


@pytest.mark.torch
@pytest.mark.slow
def test_pth_and_npz_give_the_same_params(pair):
  _, state_dict, pth, params, d = pair
  npz = str(d / "inception.npz")
  assert inception.main(["--convert", pth, npz]) == 0
  b = inception.load_inception_params(npz)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  n_conv = sum(v.numel() for k, v in state_dict.items() if k.endswith("conv.weight"))
  n_bn = sum(v.numel() for k, v in state_dict.items() if k.endswith("bn.bias"))
  assert n_params == n_conv + n_bn  # BatchNorm folded into one bias per channel
  # The CLI reports a bad input on one line and exits 2, writing nothing.
  assert inception.main(["--convert", str(d / "missing.pth"), str(d / "x.npz")]) == 2
  assert not os.path.exists(d / "x.npz")


@pytest.mark.torch
@pytest.mark.slow
def test_pool3_features_match_pytorch_fid(pair):
  """The FID route: 32x32 RGB (CIFAR-like) -> bilinear 299 -> 2x - 1 -> pool3.

  Inputs are on the 8-bit grid, where the PNG rounding of the paper's route is exact.
  Grayscale tiling is checked exactly in test_preprocess_tiles_grayscale_and_quantizes_like_png.
  """
  model, _, _, params, _ = pair
  rng = np.random.default_rng(2)
  x = (rng.integers(0, 256, (2, 32, 32, 3)) / 255).astype(np.float32)
  ours = np.asarray(jax.jit(inception.inception_features)(params, x), np.float64)
  assert ours.shape == (2, inception.FEATURE_DIM)
  _assert_features_close(ours, _torch_pool3(model, x))


@pytest.mark.torch
@pytest.mark.slow
def test_fid_from_both_feature_sets_agrees(pair):
  """Two sets of 5 images at 75x75, no resize (the smallest grid the network takes).

  At 75 the last blocks run on 1x1 maps, where averaging the zero padding (torchvision's
  blocks) instead of leaving it out (the FID blocks) would change every pool branch.
  (pytorch-fid's own Frechet distance is compared with ours in fid_test.py: its
  scipy.linalg.sqrtm takes 20 s or more at 2048 features on this machine.)
  """
  model, _, _, params, _ = pair
  rng = np.random.default_rng(3)
  x = rng.random((10, 75, 75, 3)).astype(np.float32)
  x[5:] = x[5:] * 0.5 + 0.25  # a second, different distribution
  x = np.floor(x * 255 + 0.5).astype(np.float32) / 255
  ours = np.asarray(jax.jit(lambda p, im: inception.inception_features(p, im, size=None))(
      params, x), np.float64)
  model.resize_input = False
  try:
    ref = _torch_pool3(model, x)
  finally:
    model.resize_input = True
  _assert_features_close(ours, ref)
  # (5 samples < 2048 features: the exact sample-space form of the same distance.)
  d_ours = fid.frechet_distance_of_features(ours[:5], ours[5:])
  d_ref = fid.frechet_distance_of_features(ref[:5], ref[5:])
  assert d_ours > 1e-3 * np.abs(ref).max() ** 2
  np.testing.assert_allclose(d_ours, d_ref, rtol=1e-4)
