"""A memorization audit of any model's samples against its training set.

  python -m jaxdiff.audit --train=TRAIN --samples=SAMPLES --workdir=DIR \
      [--heldout=HELDOUT] [--k=1/3,1/2,1/4] [--image_size=32] [--grayscale=auto]

TRAIN, SAMPLES and HELDOUT are folders of image files (PNG/JPEG/BMP/TIFF, recursively)
or .npz / .npy arrays (jaxdiff.data.image_files): the samples may come from any framework
(a diffusers pipeline, the authors' PNG files, ...). Both sets go through the same
preprocessing, stated in the output.

A sample is a copy when its gap ratio ||x - a_1|| / ||x - a_2|| (a_1, a_2 its nearest and
second-nearest training images, plain L2 in pixel space) is below k (paper eq. 6); f_mem
is the fraction of such samples, with its exact (Clopper-Pearson) 95% interval, which
unlike the paper's percentile bootstrap (also given, as f_mem_boot_lo/hi) does not
collapse to [0, 0] when no sample is a copy. The ratio does not change
when every image is shifted or scaled alike, so the pixel range does not matter. Real
held-out images (`--heldout`) scored the same way give the noise floor: near-duplicates
in the data themselves (0-0.6% on the bundled digits).

The nearest neighbours are found on the device by blocked matrix products
(jaxdiff.metrics.memorization): memory is the two image sets plus one
sample_block x train_block block of distances.

Writes DIR/audit.json (f_mem, f_mem_lo, f_mem_hi per k; num_samples, num_train;
heldout_f_mem, ... with --heldout), DIR/audit.md, DIR/gap_ratios.png (+ .pdf) and
DIR/most_copied.png (the samples with the smallest ratios beside their nearest training
images). Rerunning the same command prints the finished audit again; a different command
on the same DIR is refused.
"""

from __future__ import annotations

import dataclasses
import fractions
import json
import os
import time
from typing import Sequence

import numpy as np

from jaxdiff import cli
from jaxdiff import fileio
from jaxdiff.data import image_files
from jaxdiff.errors import DataError, JaxdiffError, WorkdirError

DEFAULT_KS = "1/3,1/2,1/4"
GRID_SAMPLES = 16   # the most-copied samples shown
GRID_COLUMNS = 8


def parse_ks(text: str) -> list[tuple[str, float]]:
  """"1/3,0.5" -> [("1/3", 0.333...), ("1/2", 0.5)]: labels as fractions, values in (0, 1)."""
  out = []
  for part in str(text).split(","):
    part = part.strip()
    try:
      value = float(fractions.Fraction(part))
    except (ValueError, ZeroDivisionError):
      raise DataError(f"--k={text}: {part!r} is not a number; expected thresholds in (0, 1) "
                      "such as 1/3,1/2,1/4") from None
    if not 0.0 < value < 1.0:
      raise DataError(f"--k={text}: {part} is not in (0, 1); expected thresholds such as "
                      "1/3,1/2,1/4")
    out.append((k_label(value), value))
  if not out:
    raise DataError(f"--k={text}: expected at least one threshold, e.g. 1/3")
  return out


def k_label(k: float) -> str:
  """1/3 -> "1/3", 0.3 -> "3/10": the key of a threshold in audit.json."""
  f = fractions.Fraction(k).limit_denominator(100)
  return str(f) if abs(float(f) - k) < 1e-9 else f"{k:g}"


@dataclasses.dataclass(frozen=True)
class SetScore:
  """The memorization numbers of one set of images against the training set."""
  f_mem: np.ndarray       # [K]
  f_mem_lo: np.ndarray    # [K] Clopper-Pearson 95%
  f_mem_hi: np.ndarray    # [K]
  boot_lo: np.ndarray     # [K] percentile bootstrap 95% (the paper's)
  boot_hi: np.ndarray     # [K]
  ratios: np.ndarray      # [S] gap ratios
  nearest: np.ndarray     # [S] index of the nearest training image
  ratio_median: float


def score(images: np.ndarray, train: np.ndarray, ks: Sequence[float], *, n_bootstrap: int,
          seed: int, sample_block: int, train_block: int) -> SetScore:
  """Gap ratios of `images` against `train`, and f_mem per k with its 95% interval."""
  from jaxdiff.metrics import memorization
  nb = memorization.nearest_neighbours_host(images, train, sample_block=sample_block,
                                            train_block=train_block)
  ratios = memorization.ratios_from_neighbours(nb)
  stats = memorization.fmem_intervals(ratios, ks, n_bootstrap, seed)
  num = int(stats["num_samples"])
  exact = np.asarray([memorization.binomial_interval(int(round(f * num)), num)
                      for f in stats["f_mem"]]).reshape(-1, 2)
  return SetScore(stats["f_mem"], exact[:, 0], exact[:, 1], stats["f_mem_lo"],
                  stats["f_mem_hi"], np.asarray(ratios), np.asarray(nb.idx1),
                  float(stats["ratio_median"]))


def _same_shape(name: str, a: image_files.Images, train: image_files.Images,
                path: str, train_path: str) -> None:
  if a.pixels.shape[1:] != train.pixels.shape[1:]:
    h, w, c = a.pixels.shape[1:]
    th, tw, tc = train.pixels.shape[1:]
    raise DataError(
        f"--{name}={path}: images are {h}x{w}x{c} but the training images of {train_path} are "
        f"{th}x{tw}x{tc}; give --image_size (and --grayscale) so that both are preprocessed "
        "to one shape")


def run_audit(train_path: str, samples_path: str, workdir: str, *, heldout_path: str = "",
              ks: str = DEFAULT_KS, image_size: int = 0, grayscale: str = "auto",
              n_bootstrap: int = 1000, seed: int = 0, sample_block: int = 1024,
              train_block: int = 4096) -> dict:
  """Scores the samples (and held-out images) against the training set; writes DIR/.

  Returns:
    The contents of audit.json.
  """
  parsed_ks = parse_ks(ks)
  if grayscale not in ("auto", "yes", "no"):
    raise DataError(f"--grayscale={grayscale}: expected auto, yes or no")
  if image_size < 0:
    raise DataError(f"--image_size={image_size}: expected a positive size, or 0 to keep "
                    "the images' own size")
  inputs = dict(train=os.path.abspath(train_path), samples=os.path.abspath(samples_path),
                heldout=os.path.abspath(heldout_path) if heldout_path else "",
                k=[label for label, _ in parsed_ks], image_size=image_size,
                grayscale=grayscale, n_bootstrap=n_bootstrap, seed=seed)
  existing = _finished(workdir, inputs)
  if existing is not None:
    return existing

  size = image_size or None
  gray = {"auto": None, "yes": True, "no": False}[grayscale]
  t0 = time.time()
  train = image_files.load_images(train_path, size, gray)
  if gray is None:  # one decision for every set: the training set's
    gray = train.pixels.shape[-1] == 1
  samples = image_files.load_images(samples_path, size, gray)
  _same_shape("samples", samples, train, samples_path, train_path)
  heldout = None
  if heldout_path:
    heldout = image_files.load_images(heldout_path, size, gray)
    _same_shape("heldout", heldout, train, heldout_path, train_path)
  if train.pixels.shape[0] < 2:
    raise DataError(f"--train={train_path}: {train.pixels.shape[0]} image; the gap ratio "
                    "needs at least 2 training images")
  load_seconds = time.time() - t0

  values = [v for _, v in parsed_ks]
  kw = dict(n_bootstrap=n_bootstrap, seed=seed, sample_block=sample_block,
            train_block=train_block)
  t0 = time.time()
  s = score(samples.pixels, train.pixels, values, **kw)
  h = score(heldout.pixels, train.pixels, values, **kw) if heldout is not None else None
  score_seconds = time.time() - t0

  labels = [label for label, _ in parsed_ks]
  per_k = lambda arr: {label: float(v) for label, v in zip(labels, arr)}
  order = np.argsort(np.where(np.isfinite(s.ratios), s.ratios, np.inf), kind="stable")
  top = order[:min(GRID_SAMPLES, len(order))]
  result = dict(
      inputs=inputs,
      k=labels, k_values=values,
      f_mem=per_k(s.f_mem), f_mem_lo=per_k(s.f_mem_lo), f_mem_hi=per_k(s.f_mem_hi),
      f_mem_boot_lo=per_k(s.boot_lo), f_mem_boot_hi=per_k(s.boot_hi),
      ratio_median=s.ratio_median,
      num_samples=int(samples.pixels.shape[0]), num_train=int(train.pixels.shape[0]),
      image_shape=list(train.pixels.shape[1:]),
      preprocessing=dict(train=train.description, samples=samples.description),
      most_copied=[dict(sample=int(i), train=int(s.nearest[i]), ratio=float(s.ratios[i]),
                        sample_file=_file(samples, i), train_file=_file(train, s.nearest[i]))
                   for i in top],
      seconds=dict(load=round(load_seconds, 2), score=round(score_seconds, 2)))
  if h is not None:
    result.update(heldout_f_mem=per_k(h.f_mem), heldout_f_mem_lo=per_k(h.f_mem_lo),
                  heldout_f_mem_hi=per_k(h.f_mem_hi), heldout_f_mem_boot_lo=per_k(h.boot_lo),
                  heldout_f_mem_boot_hi=per_k(h.boot_hi),
                  num_heldout=int(heldout.pixels.shape[0]))
    result["preprocessing"]["heldout"] = heldout.description
  _write(workdir, result, samples.pixels, train.pixels, s, h, values)
  return result


def _file(images: image_files.Images, i) -> str:
  return images.files[int(i)] if images.files else ""


def _finished(workdir: str, inputs: dict) -> dict | None:
  """The finished audit of the same inputs in `workdir`, None if there is none yet."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir}: is a file; expected a folder (new or an audit's)")
  path = os.path.join(workdir, "audit.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      stored = json.load(f)
  except (OSError, ValueError):
    raise WorkdirError(f"{path}: unreadable; move it away or use a new --workdir") from None
  if stored.get("inputs") != json.loads(fileio.dumps(inputs)):
    diff = [f"{k}: {stored.get('inputs', {}).get(k)!r} -> {v!r}" for k, v in inputs.items()
            if stored.get("inputs", {}).get(k) != v]
    raise WorkdirError(f"--workdir={workdir} holds an audit of other inputs ({'; '.join(diff)}); "
                       "use a new --workdir")
  stored["already_finished"] = True
  return stored


def _pct(x: float) -> str:
  """A fraction in percent: 1 decimal, or 2 significant digits below 1% (0.037%)."""
  return f"{100 * x:.2g}%" if 0 < x < 0.01 else f"{100 * x:.1f}%"


def summary_lines(result: dict) -> list[str]:
  """The audit's findings in a few sentences (terminal and audit.md)."""
  main = result["k"][0]
  f, lo, hi = (result[key][main] for key in ("f_mem", "f_mem_lo", "f_mem_hi"))
  lines = [f"f_mem = {_pct(f)} [{_pct(lo)}, {_pct(hi)}] (exact 95%): of {result['num_samples']:,} "
           f"samples, that many are copies (gap ratio < {main}) of one of the "
           f"{result['num_train']:,} training images."]
  if "heldout_f_mem" in result:
    hf, hlo, hhi = (result[key][main] for key in ("heldout_f_mem", "heldout_f_mem_lo",
                                                  "heldout_f_mem_hi"))
    lines.append(f"Held-out real images (the noise floor: near-duplicates in the data): "
                 f"{_pct(hf)} [{_pct(hlo)}, {_pct(hhi)}] of {result['num_heldout']:,}.")
    if lo > hhi:
      lines.append("The samples copy training images beyond that floor.")
    elif hi < hlo:
      lines.append("The samples are copies less often than held-out real images would be "
                   "counted: no sign of memorization.")
    else:
      lines.append("The samples cannot be told apart from held-out real images at this "
                   "threshold: no memorization beyond the data's own near-duplicates.")
  return lines


def markdown(result: dict) -> str:
  lines = ["# Memorization audit", ""] + summary_lines(result) + [""]
  lines += ["| k | f_mem | exact 95% | bootstrap 95% |" + (
      " held-out f_mem | exact 95% |" if "heldout_f_mem" in result else ""),
            "|---|---|---|---|" + ("---|---|" if "heldout_f_mem" in result else "")]
  for k in result["k"]:
    row = (f"| {k} | {_pct(result['f_mem'][k])} | [{_pct(result['f_mem_lo'][k])}, "
           f"{_pct(result['f_mem_hi'][k])}] | [{_pct(result['f_mem_boot_lo'][k])}, "
           f"{_pct(result['f_mem_boot_hi'][k])}] |")
    if "heldout_f_mem" in result:
      row += (f" {_pct(result['heldout_f_mem'][k])} | [{_pct(result['heldout_f_mem_lo'][k])}, "
              f"{_pct(result['heldout_f_mem_hi'][k])}] |")
    lines.append(row)
  lines += ["", f"Median gap ratio of the samples: {result['ratio_median']:.3f}.", "",
            "## Inputs and preprocessing", ""]
  for name, text in result["preprocessing"].items():
    lines.append(f"- {name}: {text}")
  lines += [f"- compared as {'x'.join(str(v) for v in result['image_shape'])} images "
            "(H x W x C), plain L2 distance in pixel space; bootstrap "
            f"{result['inputs']['n_bootstrap']} resamples, seed {result['inputs']['seed']}", "",
            "## Gap ratios", "", "![gap ratios](gap_ratios.png)", "",
            "## The most-copied samples", "",
            "Each sample beside its nearest training image, smallest gap ratio first (red: a "
            f"copy at k = {result['k'][0]}).", "", "![most copied](most_copied.png)", "",
            "| sample | nearest training image | gap ratio |", "|---|---|---|"]
  for m in result["most_copied"]:
    lines.append(f"| {m['sample_file'] or m['sample']} | {m['train_file'] or m['train']} | "
                 f"{m['ratio']:.3f} |")
  lines += ["", f"Time: loading {result['seconds']['load']:.1f} s, scoring "
            f"{result['seconds']['score']:.1f} s.", ""]
  return "\n".join(lines)


def _write(workdir, result, samples, train, s: SetScore, h: SetScore | None, ks) -> None:
  from jaxdiff.findings import grids
  os.makedirs(workdir, exist_ok=True)
  grids.save_gap_ratio_histogram(os.path.join(workdir, "gap_ratios.png"), s.ratios,
                                 None if h is None else h.ratios, ks)
  top = [m["sample"] for m in result["most_copied"]]
  cols = min(GRID_COLUMNS, len(top))
  rows = len(top) // cols
  top = top[:rows * cols]
  shape = (rows, cols) + samples.shape[1:]
  grids.save_sample_grid(
      os.path.join(workdir, "most_copied.png"), samples[top].reshape(shape),
      train[s.nearest[top]].reshape(shape), s.ratios[top].reshape(rows, cols), ks[0],
      [f"smallest gap ratios {r * cols + 1}-{(r + 1) * cols}" for r in range(rows)],
      "the most-copied samples (left) and their nearest training images (right)")
  fileio.atomic_write_text(os.path.join(workdir, "audit.md"), markdown(result))
  # Last: audit.json marks the audit as finished.
  fileio.atomic_write_json(os.path.join(workdir, "audit.json"), result)


def _define_flags():
  from absl import flags
  flags.DEFINE_string("train", None, "The training images: a folder or a .npz/.npy file.")
  flags.DEFINE_string("samples", None, "The generated samples: a folder or a .npz/.npy file.")
  flags.DEFINE_string("workdir", None, "Output folder (audit.json, audit.md, figures).")
  flags.DEFINE_string("heldout", "", "Real images not in the training set (the noise floor).")
  flags.DEFINE_string("k", DEFAULT_KS, "Thresholds of the gap ratio; the first is the main one.")
  flags.DEFINE_integer("image_size", 0, "Resize the shorter side to this and centre-crop "
                       "(0: keep the images' own size).")
  flags.DEFINE_enum("grayscale", "auto", ["auto", "yes", "no"],
                    "Compare as grayscale (auto: if the training images are).")
  flags.DEFINE_integer("n_bootstrap", 1000, "Bootstrap resamples of the interval.")
  flags.DEFINE_integer("seed", 0, "Seed of the bootstrap.")
  flags.DEFINE_integer("sample_block", 1024, "Samples compared at a time (memory).")
  flags.DEFINE_integer("train_block", 4096, "Training images compared at a time (memory).")


def main(argv: Sequence[str]) -> None:
  from absl import flags, logging
  fv = flags.FLAGS
  if not fv["verbosity"].present:  # keep library INFO logs (XLA backends) out of the way
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {list(argv[1:])}; use --train=... --samples=... "
             "--workdir=...")
  for name in ("train", "samples", "workdir"):
    if not fv[name].value:
      cli.fail(f"--{name} is required (python -m jaxdiff.audit --help)")
  try:
    result = run_audit(fv.train, fv.samples, fv.workdir, heldout_path=fv.heldout, ks=fv.k,
                       image_size=fv.image_size, grayscale=fv.grayscale,
                       n_bootstrap=fv.n_bootstrap, seed=fv.seed,
                       sample_block=fv.sample_block, train_block=fv.train_block)
  except JaxdiffError as e:
    cli.fail(str(e))
  if result.get("already_finished"):
    print(f"jaxdiff: {fv.workdir} holds this audit already (rerun with a new --workdir to "
          "redo it):")
  for line in summary_lines(result):
    print(f"jaxdiff: {line}")
  print(f"jaxdiff: audit written to {os.path.join(fv.workdir, 'audit.md')}")



if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
