"""The protocol of a sweep, as its report states it, and its differences from the paper's.

`protocol_lines(config, runs, workdir, quality_label)` writes the "Protocol" section of
report.md from config.json (and num_params from runs.json): data and preprocessing, model,
diffusion, optimizer, batch policy, steps, EMA, sampler, samples per evaluation, quality
metric and its reference images, memorization criterion, the report's thresholds.
`differences(config, runs)` compares that config with the paper's protocol (PAPER, one
table: the CelebA U-Net of SM A.1 and the GMM MLP of SM B; shared/paper.md 1.1-1.9), chosen
by the dataset (gmm: the GMM study; anything else: the CelebA study).

The quality metric's reference images are described by WORKDIR/reference_sets.json,
{"source": "pool" | "test", "sets": [[start, stop], ...], "description": "..."}, written
by the trainer; without it the report says they are not recorded.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

from jaxdiff import fileio

# The paper's settings: {study: {config key: (value, what the paper says)}}. A value of
# None means the paper states nothing comparable (shown, never counted as a difference).
PAPER: dict[str, dict[str, tuple[Any, str]]] = {
    "celeba": {
        "data.dataset": ("celeb_a", "CelebA faces"),
        "data.image_size": (32, "32×32 (resize shorter side, centre crop)"),
        "data.grayscale": (True, "grayscale"),
        "data.center": (True, "centred by the training mean, no rescaling"),
        "data.n_train": ((128, 32768), "n from 128 to 32768"),
        "data.num_test": (2048, "2048 held-out images for the test loss"),
        "model.name": ("unet", "DDPM U-Net"),
        "model.width": (32, "W = 32 (4.02M parameters) for the headline runs"),
        "model.channel_mult": ((1, 2, 4), "channel multipliers 1, 2, 4"),
        "model.attention": ((False, True, True), "attention at the two coarsest levels"),
        "model.num_res_blocks": (2, "two residual blocks per level"),
        "model.dropout": (0.1, "dropout 0.1"),
        "diffusion.num_steps": (1000, "T = 1000"),
        "diffusion.beta_min": (1e-4, "linear beta from 1e-4"),
        "diffusion.beta_max": (2e-2, "to 2e-2"),
        "optim.name": ("sgd", "SGD with momentum"),
        "optim.lr": (1e-2, "lr 0.01"),
        "optim.momentum": (0.95, "momentum 0.95"),
        "optim.ema_decay": (0.0, "no EMA"),
        "train.batch_policy": ("min", "B = min(n, 512), shuffled epochs"),
        "train.batch_size": (512, "B = 512"),
        "train.num_steps": (2_000_000, "at least 2M steps (up to 11M)"),
        "eval.sampler": ("ddim", "deterministic DDIM"),
        "eval.sampler_steps": (200, "200 DDIM steps"),
        "eval.ddim_eta": (0.0, "eta = 0"),
        "eval.num_samples": (10_000, "10,000 samples per evaluation"),
        "eval.quality": ("fid", "FID (Inception pool3)"),
        "eval.fid_num_sets": (5, "5 disjoint reference sets"),
        "eval.fid_set_size": (10_000, "of 10,000 test images"),
        "eval.k": (1 / 3, "memorized: nearest / second-nearest distance < 1/3"),
        "eval.n_bootstrap": (1000, "f_mem interval from 1,000 bootstrap resamples"),
        "eval.loss_t": (0.01, "fixed-time losses at t = 0.01"),
        "eval.loss_noise_draws": (5, "5 noise draws"),
    },
    "gmm": {
        "data.dataset": ("gmm", "two-component Gaussian mixture"),
        "data.dim": (8, "d = 8"),
        "data.gmm_mean": (1.0, "means ±1_d"),
        "data.center": (False, "raw (uncentred) samples, as the authors' code trains"),
        "data.n_train": ((256, 4096), "n from 256 to 4096"),
        "model.name": ("mlp", "residual MLP"),
        "model.width": (128, "W = 128 (102,024 parameters)"),
        "model.num_blocks": (3, "3 residual blocks"),
        "model.dropout": (0.0, "no dropout"),
        "diffusion.num_steps": (1000, "T = 1000"),
        "optim.name": ("sgd", "SGD with momentum"),
        "optim.lr": (6e-3, "lr 6e-3"),
        "optim.momentum": (0.95, "momentum 0.95"),
        "optim.ema_decay": (0.0, "no EMA"),
        "train.batch_policy": ("full", "full batch B = n"),
        "train.num_steps": (4_000_000, "up to 4M steps"),
        "eval.sampler": ("em", "Euler-Maruyama of the reverse SDE"),
        "eval.num_samples": (10_000, "10,000 samples"),
        "eval.quality": ("gmm", "KL estimate (eqs. 26-28)"),
        "eval.k": (1 / 3, "k = 1/3"),
    },
}
STUDY_TITLE = {"celeba": "the CelebA U-Net study (SM A.1)",
               "gmm": "the Gaussian-mixture study (SM B)"}
PAPER_NUM_PARAMS = {"celeba": 4_023_000, "gmm": 102_024}


def study_of(config: Mapping[str, Any]) -> str:
  """The paper study a config is compared with: "gmm" for GMM data, else "celeba"."""
  return "gmm" if config.get("data", {}).get("dataset") == "gmm" else "celeba"


def _same(ours, paper) -> bool:
  if isinstance(paper, (list, tuple)) and isinstance(ours, (list, tuple)):
    return len(ours) == len(paper) and all(_same(a, b) for a, b in zip(ours, paper))
  if isinstance(paper, bool) or isinstance(ours, bool):
    return ours is paper or ours == paper
  if isinstance(paper, (int, float)) and isinstance(ours, (int, float)):
    return math.isclose(float(ours), float(paper), rel_tol=1e-6)
  return ours == paper


def _show(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  if isinstance(v, (list, tuple)):
    return "(" + ", ".join(_show(x) for x in v) + ")"
  return str(v)


def differences(config: Mapping[str, Any], runs: Sequence[Mapping[str, Any]] = (),
                quality_name: str | None = None) -> list[str]:
  """One line per setting that differs from the paper's study (see PAPER)."""
  study = study_of(config)
  flat = fileio.flatten_dict(config)
  out = []
  for key, (paper, says) in PAPER[study].items():
    ours = flat.get(key)
    if key == "optim.lr" and isinstance(ours, (list, tuple)):
      ours = ours[0] if len(ours) == 1 else tuple(ours)
    if key == "eval.quality" and ours == "auto" and quality_name:
      ours = quality_name
    if key == "data.n_train" and isinstance(ours, (list, tuple)) and ours:
      lo, hi = min(ours), max(ours)
      if (lo, hi) != tuple(paper):
        out.append(f"`{key}`: n from {lo} to {hi} (paper: {says})")
      continue
    if key == "train.batch_size" and flat.get("train.batch_policy") == "full":
      continue  # the batch is n: the size does not apply
    if ours is None or _same(ours, paper):
      continue
    out.append(f"`{key}` = {_show(ours)} (paper: {says})")
  if len(flat.get("data.seeds") or ()) > 1:
    out.append("seeds: runs of one seed share their initial weights and noise across n "
               "(jaxdiff's run keys; the report's bootstrap resamples seeds whole); the "
               "authors' runs set no seed")
  params = sorted({int(r["num_params"]) for r in runs if r.get("num_params") is not None})
  ref = PAPER_NUM_PARAMS[study]
  if params and any(abs(p - ref) > 0.01 * ref for p in params):
    out.append(f"parameters: {', '.join(f'{p:,}' for p in params)} (paper: {ref:,} at the "
               "headline width)")
  return out


def reference_sets(workdir: str) -> dict[str, Any] | None:
  """WORKDIR/reference_sets.json, or None when absent or unreadable."""
  path = os.path.join(workdir, "reference_sets.json")
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
  except (OSError, json.JSONDecodeError, UnicodeDecodeError):
    return None
  return d if isinstance(d, dict) else None


def _ns(ns) -> str:
  ns = list(ns)
  return "{" + ", ".join(str(n) for n in ns) + "}"


BATCH_TEXT = {
    "min": "B = min(B_max, n) per run, shuffled epochs without replacement (the paper)",
    "replacement": "B = B_max for every n, drawn with replacement",
    "full": "full batch B = n",
}
SAMPLER_TEXT = {"ddim": "DDIM", "ddpm": "DDPM ancestral", "em": "Euler-Maruyama (reverse SDE)"}


def protocol_lines(config: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
                   workdir: str, quality_label: str | None = None,
                   quality_name: str | None = None) -> list[str]:
  """The "Protocol" section of report.md (markdown lines) for one workdir."""
  c = {k: (v if isinstance(v, dict) else {}) for k, v in config.items()}
  d, m, df, o, t, e, rp = (c.get(k, {}) for k in ("data", "model", "diffusion", "optim",
                                                  "train", "eval", "report"))
  lines = []
  ds = d.get("dataset", "?")
  if ds == "gmm":
    data = (f"Gaussian mixture ½N(+{_show(d.get('gmm_mean'))}·1, I) + ½N(-"
            f"{_show(d.get('gmm_mean'))}·1, I) in d = {d.get('dim')}")
  elif ds == "gaussian":
    data = f"Gaussian data in d = {d.get('dim')}"
  else:
    size = d.get("image_size")
    data = (f"{ds}, {size}×{size} {'grayscale' if d.get('grayscale') else 'colour'} images")
  order = d.get("order_seed", -1)
  lines.append(
      f"- **Data**: {data}; n ∈ {_ns(d.get('n_train', ()))}; seeds {_ns(d.get('seeds', ()))}; "
      f"data blocks (index) {_ns(d.get('index', ()))} (run i trains on [i·n, (i+1)·n) of "
      "the pool); pool order: "
      + ("the dataset's own" if order is None or order < 0 else f"a fixed permutation "
         f"(order_seed {order})")
      + f"; {d.get('num_test')} held-out examples for the test loss; preprocessing: "
      + ("each run's training mean subtracted" if d.get("center") else "none (raw values)")
      + ".")
  params = sorted({int(r["num_params"]) for r in runs if r.get("num_params") is not None})
  pstr = f"; {', '.join(f'{p:,}' for p in params)} parameters" if params else ""
  if m.get("name") == "unet":
    model = (f"U-Net, width W = {m.get('width')}, channel multipliers "
             f"{_show(m.get('channel_mult'))}, attention {_show(m.get('attention'))}, "
             f"{m.get('num_res_blocks')} residual blocks per level, dropout "
             f"{_show(m.get('dropout'))}")
  else:
    model = (f"{m.get('name')}, width W = {m.get('width')}, {m.get('num_blocks')} residual "
             f"blocks, dropout {_show(m.get('dropout'))}")
  lines.append(f"- **Model**: {model}{pstr}; parameters in {m.get('dtype', 'float32')}.")
  lines.append(f"- **Diffusion**: T = {df.get('num_steps')} DDPM steps, linear beta from "
               f"{_show(df.get('beta_min'))} to {_show(df.get('beta_max'))}, training indices "
               f"uniform in [{df.get('min_train_index')}, {(df.get('num_steps') or 0) - 1}]; "
               "epsilon-prediction MSE loss.")
  lrs = o.get("lr", ())
  lrs = lrs if isinstance(lrs, (list, tuple)) else (lrs,)
  if o.get("name") == "sgd":
    opt = f"SGD, lr {', '.join(_show(v) for v in lrs)}, momentum {_show(o.get('momentum'))}"
  else:
    opt = (f"{o.get('name')}, lr {', '.join(_show(v) for v in lrs)}, b1 {_show(o.get('b1'))}, "
           f"b2 {_show(o.get('b2'))}, eps {_show(o.get('eps'))}")
  ema = o.get("ema_decay") or 0.0
  lines.append(f"- **Optimizer**: {opt}; no learning-rate schedule; EMA "
               + (f"decay {_show(ema)} (evaluated on the EMA)" if ema else "none") + ".")
  policy = t.get("batch_policy")
  lines.append(f"- **Batch**: B_max = {t.get('batch_size')}, "
               f"{BATCH_TEXT.get(policy, str(policy))}.")
  times = e.get("times") or ()
  when = (f"{len(times)} evaluations from step {times[0]} to {times[-1]}" if times else
          f"grid '{e.get('grid')}' ({e.get('num_times')} times from step "
          f"{e.get('first_time')})")
  lines.append(f"- **Steps**: {t.get('num_steps'):,} optimizer steps per run; {when}."
               if isinstance(t.get("num_steps"), int) else f"- **Steps**: {t.get('num_steps')}.")
  sampler = e.get("sampler")
  stext = f"{SAMPLER_TEXT.get(sampler, sampler)}, {e.get('sampler_steps')} steps"
  if sampler == "ddim":
    stext += f", eta = {_show(e.get('ddim_eta'))}"
  lines.append(f"- **Sampler**: {stext}; {e.get('num_samples'):,} samples per run and "
               "evaluation." if isinstance(e.get("num_samples"), int) else
               f"- **Sampler**: {stext}.")
  q = quality_label or e.get("quality")
  qtext = f"{q}"
  if (quality_name or e.get("quality")) in ("fid", "classifier_fd", "pixel_fd"):
    qtext += (f"; reference: {e.get('fid_num_sets')} set(s) of {e.get('fid_set_size'):,} "
              "images" if isinstance(e.get("fid_set_size"), int) else "")
  ref = reference_sets(workdir)
  if ref is not None and ref.get("description"):
    qtext += f". Reference images: {ref['description']}"
  elif (quality_name or e.get("quality")) in ("fid", "classifier_fd", "pixel_fd"):
    qtext += (". Which images the reference sets are is not recorded in this workdir "
              "(no reference_sets.json)")
  lines.append(f"- **Quality metric**: {qtext}.")
  lines.append(f"- **Memorization**: a sample is memorized when ‖x - a1‖ / ‖x - a2‖ < "
               f"{_show(e.get('k'))} (a1, a2 its nearest and second-nearest training "
               f"examples); f_mem interval from {e.get('n_bootstrap')} bootstrap resamples; "
               f"fixed-time losses at t = {_show(e.get('loss_t'))} with "
               f"{e.get('loss_noise_draws')} noise draws.")
  if rp:
    keys = ("tau_mem_threshold", "tau_gen_tol", "tau_gen_reference", "tau_gen_abs_tol",
            "loss_gap_sigmas", "conf")
    lines.append("- **Report thresholds** (config.report): "
                 + ", ".join(f"{k} = {_show(rp[k])}" for k in keys if k in rp) + ".")
  return lines
