"""python -m jaxdiff.audit and jaxdiff.data.image_files on the bundled digits and synthetic images."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxdiff import audit
from jaxdiff.data import image_files
from jaxdiff.errors import DataError, WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits_uint8() -> np.ndarray:
  from sklearn.datasets import load_digits
  x = load_digits().images  # [1797, 8, 8], values 0..16
  return np.round(x * (255 / 16)).astype(np.uint8)


def _write_pngs(folder, images, nested: bool = False):
  os.makedirs(folder, exist_ok=True)
  for i, img in enumerate(images):
    sub = os.path.join(folder, f"part{i % 2}") if nested else folder
    os.makedirs(sub, exist_ok=True)
    Image.fromarray(img).save(os.path.join(sub, f"img_{i:05d}.png"))


@pytest.fixture(scope="module")
def digits_audit(tmp_path_factory):
  """50 exact copies of training digits + 50 held-out digits, scored against 1,000."""
  root = tmp_path_factory.mktemp("audit")
  d = _digits_uint8()
  train, copies, fresh, heldout = d[:1000], d[:50], d[1000:1050], d[1100:1400]
  _write_pngs(str(root / "train"), train)
  samples = np.concatenate([copies, fresh]).astype(np.float32) / 255.0
  np.savez(str(root / "samples.npz"), images=samples[:, None])  # NCHW float in [0, 1]
  np.save(str(root / "heldout.npy"), heldout[..., None])  # NHWC uint8
  workdir = str(root / "wd")
  result = audit.run_audit(str(root / "train"), str(root / "samples.npz"), workdir,
                           heldout_path=str(root / "heldout.npy"))
  return root, workdir, result


@pytest.mark.slow
def test_audit_finds_the_planted_copies(digits_audit):
  _, workdir, r = digits_audit
  assert r["num_samples"] == 100 and r["num_train"] == 1000 and r["num_heldout"] == 300
  assert r["k"] == ["1/3", "1/2", "1/4"]
  f, lo, hi = r["f_mem"]["1/3"], r["f_mem_lo"]["1/3"], r["f_mem_hi"]["1/3"]
  # 50 of 100 samples are exact copies; the held-out half adds at most its noise floor.
  assert 0.5 <= f <= 0.52 and lo <= 0.5 <= hi and hi - lo < 0.25
  assert r["f_mem_boot_lo"]["1/3"] <= 0.5 <= r["f_mem_boot_hi"]["1/3"]
  # The digits' own near-duplicates: 0-0.6% of held-out digits count as copies.
  assert r["heldout_f_mem"]["1/3"] <= 0.01 and r["heldout_f_mem_hi"]["1/3"] > 0
  # The most-copied samples are the planted copies, each beside its own original.
  for m in r["most_copied"]:
    assert m["ratio"] == 0.0 and m["sample"] < 50 and m["train"] == m["sample"]
    assert m["train_file"].endswith(f"img_{m['train']:05d}.png")
  with open(os.path.join(workdir, "audit.json")) as fh:
    stored = json.load(fh)
  for key in ("f_mem", "f_mem_lo", "f_mem_hi", "num_samples", "num_train", "heldout_f_mem"):
    assert key in stored
  text = open(os.path.join(workdir, "audit.md")).read()
  assert "f_mem = 50.0%" in text and "layout NCHW (channels moved last)" in text
  assert "noise floor" in text
  for name in ("gap_ratios.png", "gap_ratios.pdf", "most_copied.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000, name


@pytest.mark.slow
def test_rerun_is_finished_and_other_inputs_are_refused(digits_audit):
  root, workdir, r = digits_audit
  again = audit.run_audit(str(root / "train"), str(root / "samples.npz"), workdir,
                          heldout_path=str(root / "heldout.npy"))
  assert again["already_finished"] and again["f_mem"] == r["f_mem"]
  with pytest.raises(WorkdirError, match=r"holds an audit of other inputs \(heldout"):
    audit.run_audit(str(root / "train"), str(root / "samples.npz"), workdir)


@pytest.mark.slow
def test_mismatched_shapes_are_one_line(digits_audit, tmp_path):
  root, _, _ = digits_audit
  big = np.zeros((4, 16, 16, 1), np.uint8)
  np.save(str(tmp_path / "big.npy"), big)
  with pytest.raises(DataError, match=r"big.npy: images are 16x16x1 but the training images "
                                      r"of .*train are 8x8x1; give --image_size"):
    audit.run_audit(str(root / "train"), str(tmp_path / "big.npy"), str(tmp_path / "wd"))
  # With --image_size both sets are resized alike and compared.
  r = audit.run_audit(str(root / "train"), str(tmp_path / "big.npy"), str(tmp_path / "wd2"),
                      image_size=8, n_bootstrap=0)
  assert r["num_samples"] == 4 and r["image_shape"] == [8, 8, 1]


def test_command_line_exit_code_and_one_line(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "jaxdiff.audit", f"--train={tmp_path}/none",
                         f"--samples={tmp_path}/none", f"--workdir={tmp_path}/wd"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"jaxdiff: error: {tmp_path}/none: no such file or folder")


def test_parse_ks():
  assert audit.parse_ks("1/3,0.5") == [("1/3", pytest.approx(1 / 3)), ("1/2", 0.5)]
  for bad in ("1", "0", "x", "1/0"):
    with pytest.raises(DataError, match=r"--k="):
      audit.parse_ks(bad)


# ------------------------------------------------------------------------ image_files


def test_folder_order_is_sorted_and_recursive(tmp_path):
  imgs = np.stack([np.full((4, 4), 10 * i, np.uint8) for i in range(6)])
  _write_pngs(str(tmp_path / "f"), imgs, nested=True)
  got = image_files.load_images(str(tmp_path / "f"))
  # part0/ holds images 0, 2, 4 and part1/ 1, 3, 5: sorted by relative path.
  assert [os.path.relpath(p, tmp_path / "f") for p in got.files][:2] == [
      os.path.join("part0", "img_00000.png"), os.path.join("part0", "img_00002.png")]
  np.testing.assert_allclose(got.pixels[:, 0, 0, 0] * 255, [0, 20, 40, 10, 30, 50], atol=1e-4)
  assert got.pixels.shape == (6, 4, 4, 1) and "6 PNG files" in got.description


def test_bad_files_name_the_file(tmp_path):
  os.makedirs(tmp_path / "empty")
  with pytest.raises(DataError, match=r"empty: no image files"):
    image_files.load_images(str(tmp_path / "empty"))
  os.makedirs(tmp_path / "broken")
  _write_pngs(str(tmp_path / "broken"), np.zeros((2, 4, 4), np.uint8))
  path = tmp_path / "broken" / "img_00001.png"
  path.write_bytes(path.read_bytes()[:30])  # truncated
  with pytest.raises(DataError, match=r"img_00001.png: not a readable image"):
    image_files.load_images(str(tmp_path / "broken"))
  os.makedirs(tmp_path / "mixed")
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mixed" / "a.png")
  Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "mixed" / "b.png")
  with pytest.raises(DataError, match=r"a.png is 4x4, .*b.png is 6x6\); give an image size"):
    image_files.load_images(str(tmp_path / "mixed"))
  assert image_files.load_images(str(tmp_path / "mixed"), image_size=4).pixels.shape == (
      2, 4, 4, 1)
  np.save(tmp_path / "flat.npy", np.zeros((3, 10)))
  with pytest.raises(DataError, match=r"flat.npy: an array of shape \(3, 10\)"):
    image_files.load_images(str(tmp_path / "flat.npy"))


def test_array_layouts_and_ranges(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
  np.save(tmp_path / "nhwc.npy", rgb)
  np.save(tmp_path / "nchw.npy", np.moveaxis(rgb, -1, 1).astype(np.float32) / 127.5 - 1.0)
  a = image_files.load_images(str(tmp_path / "nhwc.npy"))
  b = image_files.load_images(str(tmp_path / "nchw.npy"))
  np.testing.assert_allclose(a.pixels, rgb / 255.0, atol=1e-6)
  np.testing.assert_allclose(b.pixels, a.pixels, atol=1e-5)
  assert "NHWC" in a.description and "NCHW" in b.description and "[-1, 1]" in b.description
  gray = image_files.load_images(str(tmp_path / "nhwc.npy"), grayscale=True)
  np.testing.assert_allclose(gray.pixels[..., 0], (rgb / 255.0) @ np.asarray(
      (0.2989, 0.587, 0.114)), atol=1e-5)


def test_exact_interval_covers_on_binomial_draws():
  """Clopper-Pearson coverage >= 95% on 2,000 synthetic audits per (S, f), f known,
  including the noise-floor regime (f = 0.3%) where the bootstrap collapses to [0, 0]."""
  from jaxdiff.metrics import memorization
  rng = np.random.default_rng(0)
  for total, f in ((100, 0.5), (700, 0.003), (1000, 0.05)):
    counts = rng.binomial(total, f, size=2000)
    cache = {c: memorization.binomial_interval(int(c), total) for c in np.unique(counts)}
    covered = np.mean([cache[c][0] <= f <= cache[c][1] for c in counts])
    assert covered >= 0.95, (total, f, covered)
  lo, hi = memorization.binomial_interval(0, 697)
  assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 697), rel=1e-6)
