"""Checks `jaxdiff.advise` against reality on the bundled digits (issue "Your own data").

  python benchmarks/advise_digits.py --workdir=DIR [--config=configs/digits.py]

With the digits protocol (configs/digits.py: residual MLP width 128, 32,000 Adam steps,
octaves evaluation grid, f_mem > 1%), it
  1. asks `advise` for N = 128 and N = 256 from pilots of n = 8, 16, 32, 64 x the config's
     seeds (one pilot sweep in DIR/pilots, shared by both N: the second call resumes it);
  2. trains n = 128 and n = 256 with the same seeds (DIR/measured) and measures their
     tau_mem (the report's onset, per run; the geometric mean over seeds);
  3. prints, per N, predicted tau_mem [lo, hi], measured tau_mem (each seed), their ratio
     predicted / measured and whether the interval holds the measured onsets.
Takes many minutes on a 2-core CPU (12 runs of 32,000 steps); both workdirs resume.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position

from jaxdiff import advise  # pylint: disable=g-import-not-at-top,wrong-import-position
# pylint: disable=g-import-not-at-top,wrong-import-position
from jaxdiff.findings.analysis import analyze
from jaxdiff.findings.settings import settings_from_config
from jaxdiff.findings.workdirs import load_workdir
# pylint: enable=g-import-not-at-top,wrong-import-position
from jaxdiff import train  # pylint: disable=g-import-not-at-top,wrong-import-position

TARGETS = (128, 256)
PILOTS = "8,16,32,64"


def load_config(path: str):
  spec = importlib.util.spec_from_file_location("advise_bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def measured_onsets(config, workdir: str) -> dict[int, list]:
  """Trains data.n_train = TARGETS with the config's protocol; tau_mem Onsets per n."""
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.data.n_train = TARGETS
  cfg.report.auto = True
  train.train_and_evaluate(cfg, workdir)
  sweep = load_workdir(workdir)
  analysis = analyze([sweep], settings_from_config(sweep.config))
  out: dict[int, list] = {}
  for r in analysis.runs:
    out.setdefault(r.n, []).append(r.tau_mem)
  return out


def _f(x, digits: int = 0) -> str:
  return "open" if x is None else f"{x:.{digits}f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "digits.py"))
  args = parser.parse_args()
  config = load_config(args.config)
  t0 = time.time()
  advice = {}
  for n in TARGETS:
    advice[n] = advise.advise(config, os.path.join(args.workdir, "pilots"), n,
                              pilot_sizes=PILOTS)
    print(f"[{time.time() - t0:.0f} s] N = {n}: {advice[n]['paragraph']}", flush=True)
  measured = measured_onsets(config, os.path.join(args.workdir, "measured"))
  print(f"[{time.time() - t0:.0f} s] measured runs trained", flush=True)
  a0 = advice[TARGETS[0]]
  print(f"pilots n = {PILOTS}; alpha = {_f(a0['alpha'], 3)} [{_f(a0['alpha_lo'], 3)}, "
        f"{_f(a0['alpha_hi'], 3)}]")
  print("N    predicted tau_mem [lo, hi]      measured (per seed)          geo-mean   "
        "predicted/measured  measured in interval")
  for n in TARGETS:
    a = advice[n]
    onsets = measured.get(n, [])
    values = [o.value for o in onsets if o.observed]
    shown = ", ".join(f"{o.value:.0f}" if o.observed else f"{o.status} ({o.bound:g})"
                      for o in onsets)
    # A right-censored run enters the geometric mean at its bound: the mean is then a
    # lower bound (">") and the ratio an upper bound ("<").
    bounds = values + [o.bound for o in onsets if o.status == "right_censored"]
    censored = len(bounds) > len(values)
    geo = math.exp(sum(math.log(v) for v in bounds) / len(bounds)) if bounds else None
    ratio = a["tau_mem"] / geo if geo and a["tau_mem"] else None
    lo, hi = a["tau_mem_lo"], a["tau_mem_hi"]
    inside = [lo <= v <= (hi if hi is not None else math.inf) for v in values] \
        if lo is not None else []
    print(f"{n:<4} {_f(a['tau_mem']):>9} [{_f(lo)}, {_f(hi)}]"
          f"   {shown:<28} {'>' if censored else ''}{_f(geo):>8}   "
          f"{'<' if censored else ''}{'-' if ratio is None else f'{ratio:.3f}':>10}          "
          f"{sum(inside)}/{len(onsets)}")
  print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
  main()
