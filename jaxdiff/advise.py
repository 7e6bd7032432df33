"""When to stop training: tau_mem(N) predicted from pilot runs on smaller subsets.

  python -m jaxdiff.advise --config=configs/digits.py --workdir=DIR --n=256 \
      [--pilot_sizes=auto|config|8,16,32,64] [--seeds=0,1] [--budget=STEPS]

The config's model, data, optimizer and evaluation protocol are trained on pilot subsets
of n << N images (by default the geometric grid N/64, N/32, N/16, N/8; `config` takes
the config's data.n_train; or a list), with several seeds, as ONE sweep of the ordinary
trainer (`jaxdiff.train.train_and_evaluate`): DIR is a normal resumable workdir with its
metrics, checkpoints and report.md, and rerunning the same command on it does not
retrain. From the pilots' onsets (the report's definitions: tau_mem where f_mem first
exceeds report.tau_mem_threshold, tau_gen where the quality reaches its plateau) it fits,
with the censoring-aware maximum likelihood of `jaxdiff.findings.fits`,

  log tau_mem = log c + alpha log(n / N) + sigma eps                          (1)

so that the intercept IS the prediction: log c = log tau_mem(N) (the median onset of a run
on N images), and its interval (cluster bootstrap over seeds, or the t-calibrated profile
likelihood, whichever `fits` uses; see there) is the fit's uncertainty propagated to
log N, including that of alpha (the profile and the bootstrap refit both coefficients). The
same fit of tau_gen gives when the samples are good. The extrapolation distance N / max(n)
is stated: an interval widens with it as |log(N / n_max)| times alpha's uncertainty.

The advice: start memorizing after tau_mem(N) [lo, hi] steps, samples good from tau_gen(N),
so stop between tau_gen(N) and lo (`recommended_steps` = floor(lo), or the budget when
lo lies beyond it: "no memorization expected within the budget").

Writes DIR/advice.json (n, tau_mem, tau_mem_lo, tau_mem_hi, tau_gen, tau_gen_lo,
tau_gen_hi, alpha, recommended_steps, pilot_sizes, and details) and DIR/advice.md (the
paragraph, also printed).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Sequence

import ml_collections
import numpy as np

from jaxdiff import checkpointing
from jaxdiff import cli
from jaxdiff import eval_times
from jaxdiff import fileio
from jaxdiff.errors import ConfigError, JaxdiffError

KEYS = ("n", "tau_mem", "tau_mem_lo", "tau_mem_hi", "tau_gen", "tau_gen_lo", "tau_gen_hi",
        "alpha", "recommended_steps", "pilot_sizes")
DEFAULT_SEEDS = (0, 1, 2)  # when the config has fewer than two seeds


def default_pilot_sizes(n: int) -> tuple[int, ...]:
  """The geometric grid N/64, N/32, N/16, N/8 (rounded, at least 2, without repeats)."""
  sizes = sorted({max(2, int(round(n / d))) for d in (64, 32, 16, 8)})
  return tuple(s for s in sizes if s < n)


def parse_pilot_sizes(text: str, n: int, config) -> tuple[int, ...]:
  """--pilot_sizes: "auto" (default grid), "config" (data.n_train) or "8,16,32"."""
  text = str(text).strip()
  if text in ("", "auto"):
    sizes = default_pilot_sizes(n)
  elif text == "config":
    sizes = tuple(int(v) for v in config.data.n_train)
  else:
    try:
      sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
      raise ConfigError("--pilot_sizes", text,
                        "auto, config, or increasing integers such as 8,16,32") from None
  if len(sizes) < 2 or any(s < 1 for s in sizes) or list(sizes) != sorted(set(sizes)):
    raise ConfigError("--pilot_sizes", sizes, "at least 2 increasing distinct positive sizes "
                      "(two sizes are the least that determine alpha)")
  if max(sizes) >= n:
    raise ConfigError("--pilot_sizes", sizes, f"pilot sizes below --n={n} (the advice "
                      "extrapolates from small subsets to N)")
  return sizes


def pilot_config(config, pilot_sizes: Sequence[int], seeds: Sequence[int]):
  """The config's protocol on the pilot sizes and seeds, with the report on."""
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.data.n_train = tuple(int(s) for s in pilot_sizes)
  cfg.data.seeds = tuple(int(s) for s in seeds)
  cfg.report.auto = True
  return cfg


def pilots_finished(config, workdir: str) -> bool:
  """The workdir holds this pilot sweep with every run evaluated at its last step."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(os.path.join(workdir, "runs.json")) or not os.path.isfile(path):
    return False
  try:
    with open(path, encoding="utf-8") as f:
      stored = json.load(f)
  except (OSError, json.JSONDecodeError):
    return False  # the trainer says what is wrong with it
  if checkpointing.config_differences(stored, config.to_dict()):
    return False  # the trainer refuses it with the differing keys named
  last = max(eval_times.evaluation_steps(config.eval, config.train.num_steps))
  with open(os.path.join(workdir, "runs.json"), encoding="utf-8") as f:
    run_ids = {int(r["run"]) for r in json.load(f)}
  done = {int(r["run"]) for r in fileio.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
          if isinstance(r, dict) and r.get("step") == last and "run" in r}
  return bool(run_ids) and run_ids <= done


def _predict(fits, runs, onsets, n: int, settings) -> dict[str, Any]:
  """Fit (1) to the onsets and read tau(N) off the intercept."""
  fit = fits.fit_onsets(
      {"n": [r.n / n for r in runs]}, onsets,
      seeds=[r.info["seed"] for r in runs], indices=[r.info["index"] for r in runs],
      conf=settings["conf"], num_bootstrap=settings["n_bootstrap"],
      rng_seed=settings["bootstrap_seed"])
  if fit is None:
    return {"fit": None}
  pre, alpha = fit.prefactor, fit.alpha
  return {"fit": fit, "value": pre.value, "lo": pre.lo, "hi": pre.hi, "alpha": alpha,
          "sigma": fit.sigma, "method": fit.interval_method, "detail": fit.interval_detail,
          "num_runs": fit.num_runs, "right_censored": fit.num_right_censored,
          "left_censored": fit.num_left_censored}


def _steps(x: float | None) -> str:
  if x is None:
    return "–"
  return f"{x:,.0f}" if x >= 10 else f"{x:.3g}"


def advise(config, workdir: str, n: int, *, pilot_sizes: str = "auto", seeds: str = "",
           budget: int = 0) -> dict[str, Any]:
  """Trains (or resumes) the pilots in `workdir`, fits, writes advice.json / advice.md.

  Args:
    config: a diffusion-sweep config (its protocol; data.n_train replaced by the pilots).
    workdir: the pilot workdir (resumable; the advice files are written into it).
    n: N, the training-set size the advice is for.
    pilot_sizes: "auto", "config" or "8,16,32" (see `parse_pilot_sizes`).
    seeds: "0,1,2" or "" (the config's data.seeds when it has >= 2, else 0, 1, 2).
    budget: the training budget the advice is for (0: the config's train.num_steps).

  Returns:
    The advice dict (advice.json), with "paragraph".
  """
  from jaxdiff import train  # pylint: disable=g-import-not-at-top
  from jaxdiff.findings import fits  # pylint: disable=g-import-not-at-top
  from jaxdiff.findings.analysis import analyze  # pylint: disable=g-import-not-at-top
  from jaxdiff.findings.settings import settings_from_config  # pylint: disable=g-import-not-at-top
  from jaxdiff.findings.workdirs import load_workdir  # pylint: disable=g-import-not-at-top

  if isinstance(n, bool) or not isinstance(n, int) or n < 2:
    raise ConfigError("--n", n, "an integer >= 2, the number of training images to advise for")
  if config.get("experiment", "diffusion") != "diffusion":
    raise ConfigError("experiment", config.experiment, "'diffusion' (advise trains pilot sweeps)")
  sizes = parse_pilot_sizes(pilot_sizes, n, config)
  if seeds:
    try:
      seed_list = tuple(int(s) for s in str(seeds).split(","))
    except ValueError:
      raise ConfigError("--seeds", seeds, "comma-separated non-negative integers") from None
  else:
    seed_list = tuple(config.data.seeds)
    if len(seed_list) < 2:
      seed_list = DEFAULT_SEEDS
  budget = int(budget) or int(config.train.num_steps)
  if budget < 1:
    raise ConfigError("--budget", budget, "a positive number of steps (0: train.num_steps)")
  cfg = pilot_config(config, sizes, seed_list)
  os.makedirs(workdir, exist_ok=True)
  if pilots_finished(cfg, workdir):
    print(f"jaxdiff: the pilots in {workdir} are trained already: not retraining",
          file=sys.stderr)
    resumed = True
  else:
    train.train_and_evaluate(cfg, workdir)
    resumed = False

  sweep = load_workdir(workdir)
  settings = settings_from_config(sweep.config)
  analysis = analyze([sweep], settings)
  runs = analysis.runs
  mem = _predict(fits, runs, [r.tau_mem for r in runs], n, settings)
  gen = _predict(fits, runs, [r.tau_gen for r in runs], n, settings)
  distance = n / max(sizes)
  result: dict[str, Any] = {
      "n": n, "pilot_sizes": list(sizes), "seeds": list(seed_list), "budget": budget,
      "pilot_budget": int(cfg.train.num_steps), "extrapolation": distance,
      "tau_mem": mem.get("value"), "tau_mem_lo": mem.get("lo"), "tau_mem_hi": mem.get("hi"),
      "alpha": None if mem["fit"] is None else mem["alpha"].value,
      "alpha_lo": None if mem["fit"] is None else mem["alpha"].lo,
      "alpha_hi": None if mem["fit"] is None else mem["alpha"].hi,
      "tau_mem_sigma": mem.get("sigma"), "tau_mem_interval": mem.get("detail"),
      "tau_gen": gen.get("value"), "tau_gen_lo": gen.get("lo"), "tau_gen_hi": gen.get("hi"),
      "tau_gen_slope": None if gen["fit"] is None else gen["alpha"].value,
      "tau_mem_threshold": settings["tau_mem_threshold"], "conf": settings["conf"],
      "pilot_onsets": [{"n": r.n, "seed": r.info["seed"], "index": r.info["index"],
                        "tau_mem": r.tau_mem.to_dict(), "tau_gen": r.tau_gen.to_dict()}
                       for r in runs],
      "workdir_resumed": resumed,
  }
  result["recommended_steps"], result["verdict"] = _recommend(result, mem)
  result["paragraph"] = paragraph(result, mem)
  fileio.atomic_write_text(os.path.join(workdir, "advice.md"),
                           "# When to stop\n\n" + result["paragraph"] + "\n")
  fileio.atomic_write_json(os.path.join(workdir, "advice.json"), result)
  return result


def _recommend(r: dict[str, Any], mem: dict[str, Any]) -> tuple[int | None, str]:
  """(recommended_steps, verdict): stop before the lower end of tau_mem(N)'s interval."""
  if mem["fit"] is None:
    return None, "undetermined"
  lo = r["tau_mem_lo"]
  if lo is not None and lo > r["budget"]:
    return int(r["budget"]), "no_memorization_within_budget"
  if lo is None:
    return None, "undetermined"
  return int(math.floor(lo)), "stop_before"


def paragraph(r: dict[str, Any], mem: dict[str, Any]) -> str:
  """The advice in one paragraph."""
  n, sizes = r["n"], r["pilot_sizes"]
  pilots = (f"Pilots: n = {', '.join(map(str, sizes))} x {len(r['seeds'])} seeds, "
            f"{r['pilot_budget']:,} steps each; N is {r['extrapolation']:.3g} times the "
            "largest pilot (the extrapolation distance).")
  conf = f"{100 * r['conf']:.0f}%"
  gen = (f"its samples are good from {_steps(r['tau_gen'])} "
         f"[{_steps(r['tau_gen_lo'])}, {_steps(r['tau_gen_hi'])}] steps"
         if r["tau_gen"] is not None else
         "when its samples are good is not determined by the pilots (tau_gen fit undefined)")
  if r["verdict"] == "undetermined":
    why = ("too few pilots memorize within their budget to fit tau_mem = c n^alpha: train "
           "longer (train.num_steps) or use smaller pilots" if mem["fit"] is None else
           "the interval of tau_mem(N) is open at its lower end")
    return (f"Trained on {n:,} images, this model's memorization onset cannot be predicted "
            f"from these pilots: {why}. {pilots}")
  fit = (f"tau_mem = c n^alpha with alpha = {r['alpha']:.2f} "
         f"[{_steps(r['alpha_lo'])}, {_steps(r['alpha_hi'])}], onset f_mem > "
         f"{100 * r['tau_mem_threshold']:g}%, {conf} interval by {mem['method'].replace('_', ' ')}"
         f"; a single run scatters by a factor e^sigma = {math.exp(r['tau_mem_sigma']):.2f} "
         "around the median")
  hi = _steps(r["tau_mem_hi"]) if r["tau_mem_hi"] is not None else "open"
  if r["verdict"] == "no_memorization_within_budget":
    return (f"No memorization expected within the budget: N = {n:,} is above the threshold "
            f"for this model within {r['budget']:,} steps (the onset is predicted at "
            f"{_steps(r['tau_mem'])} [{_steps(r['tau_mem_lo'])}, {hi}] steps); {gen}. "
            f"({fit}.) {pilots}")
  warn = ""
  if r["tau_gen"] is not None and r["tau_mem_lo"] < r["tau_gen"]:
    warn = (" Note: lo lies before the samples are good, so there is no safe window at "
            "this N: more data or a smaller model would open one.")
  return (f"Trained on {n:,} images, this model is predicted to start memorizing after "
          f"{_steps(r['tau_mem'])} [{_steps(r['tau_mem_lo'])}, {hi}] steps; {gen}; stop before "
          f"{_steps(r['tau_mem_lo'])} steps (recommended_steps = "
          f"{r['recommended_steps']:,}).{warn} ({fit}.) {pilots}")


# ------------------------------------------------------------------ command line


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  cli.config_flag()  # --config, as jaxdiff.main defines it
  flags.DEFINE_string("workdir", None, "The pilot workdir (resumable); advice.json/.md go here.")
  flags.DEFINE_integer("n", None, "N: the number of training images to advise for.")
  flags.DEFINE_string("pilot_sizes", "auto", "auto (N/64 ... N/8), config (data.n_train) or "
                      "a list such as 8,16,32,64.")
  flags.DEFINE_string("seeds", "", "Seeds of the pilots ('' = data.seeds, or 0,1,2 when the "
                      "config has only one).")
  flags.DEFINE_integer("budget", 0, "The training budget in steps (0 = train.num_steps).")


def main(argv: Sequence[str]) -> None:
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  fv = flags.FLAGS
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {list(argv[1:])}; use --config=... --workdir=... "
             "--n=N")
  try:
    config = fv.config
    if config is not None:
      config.get("experiment")
  except OSError as e:
    cli.fail(f"--config: {' '.join(str(e).split())}")
  if config is None:
    cli.fail("--config is required, e.g. --config=configs/digits.py")
  if not fv.workdir:
    cli.fail("--workdir is required: the pilots' workdir (advice.json is written there)")
  if fv.n is None:
    cli.fail("--n is required: the number of training images to advise for")
  try:
    result = advise(config, fv.workdir, fv.n, pilot_sizes=fv.pilot_sizes, seeds=fv.seeds,
                    budget=fv.budget)
  except JaxdiffError as e:
    cli.fail(" ".join(str(e).split()))
  print(result["paragraph"])
  print(f"jaxdiff: advice written to {os.path.join(fv.workdir, 'advice.json')} and advice.md")



if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
