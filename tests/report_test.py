"""End-to-end tests of jaxdiff.report on synthetic workdirs with known onsets.

The workdirs follow the layout of notes/schema (config.json, runs.json, metrics.jsonl,
samples/): 2 widths x 4 n x 2 seeds, with curves built so that log-time interpolation
recovers the onsets exactly:
  tau_gen = 96000 / W (W tau_gen constant), tau_mem = 9600 n / W x (1, 1.1) for seeds
  (0, 1) (300 n at W = 32), loss-gap onset = tau_mem / 2; evaluations at 0 and
  100 * 2^k up to 25600, so W = 16, n = 64 (tau_mem 38400, 42240) is right-censored.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from configs import base
from jaxdiff import fileio
from jaxdiff.findings import report
from jaxdiff.findings import timescales
from jaxdiff.findings.analysis import analyze
from jaxdiff.findings.interpretation import exponent_verdict, interpret_loss_gap
from jaxdiff.findings.markdown import markdown
from jaxdiff.findings.settings import settings_from_config
from jaxdiff.findings.summary import RUNS_CSV_COLUMNS, runs_csv
from jaxdiff.findings.workdirs import WorkdirFiles, load_workdir
from jaxdiff.errors import ConfigError, WorkdirError

TIMES = [0] + [100 * 2 ** k for k in range(9)]  # up to 25600
NS = (8, 16, 32, 64)
SEEDS = (0, 1)
SEED_FACTOR = {0: 1.0, 1: 1.1, 2: 0.95}
NUM_PARAMS = {16: 30_000, 32: 110_000}
THR, TOL, SIGMAS, LOSS_STD = 0.01, 0.1, 2.0, 0.01
LABEL = "pixel-space Fréchet distance"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def true_tau_gen(w):
  return 96000.0 / w


def true_tau_mem(w, n, seed, alpha=1.0):
  return 9600.0 * n ** alpha / w * SEED_FACTOR[seed]


def _next_time(times, tau):
  """First evaluation time at or after tau (inf beyond the grid)."""
  later = [t for t in times if t >= tau]
  return later[0] if later else math.inf


def _prev_time(times, tau):
  return max(t for t in times if t < tau)


def quality_curve(times, tau_g, q_min):
  """Log-linear through q_min (1 + TOL) exactly at tau_g, flat at q_min from the next evaluation."""
  t_in = _next_time(times, tau_g)
  out = []
  for t in times:
    if t == 0:
      out.append(10 * q_min)
    elif t <= t_in:
      out.append(max(q_min, q_min * (1 + TOL * (1 + math.log(tau_g / t) / math.log(2)))))
    else:
      out.append(q_min)
  return out


def fmem_curve(times, tau_m):
  """0 up to the evaluation before tau_m, then log-linear through THR at tau_m."""
  t_prev = _prev_time(times, tau_m)
  return [0.0 if t <= t_prev else min(0.9, THR * math.log(t / t_prev) / math.log(tau_m / t_prev))
          for t in times]


def gap_curve(times, t_gap):
  """test - train: crosses its noise SIGMAS sqrt(2) LOSS_STD exactly at t_gap."""
  noise = SIGMAS * math.sqrt(2) * LOSS_STD
  return [0.0 if t == 0 else max(0.0, noise * (1 + math.log(t / t_gap) / math.log(2)))
          for t in times]


def make_sweep(width, times=TIMES, alpha=1.0, ns=NS, quality=None, seeds=SEEDS):
  """(config, runs, rows) of a synthetic sweep of one width (`quality(t)` replaces q)."""
  config = base.get_config()
  config.data.dataset = "digits"
  config.data.n_train = tuple(ns)
  config.data.seeds = tuple(seeds)
  config.model.name = "mlp"
  config.model.width = width
  config = json.loads(fileio.dumps(config.to_dict()))
  runs, rows = [], []
  for n in ns:
    for seed in seeds:
      rid = len(runs)
      ident = dict(run=rid, n=n, seed=seed, index=0, lr=1e-3, width=width,
                   num_params=NUM_PARAMS.get(width, 1000), dataset="digits", model="mlp")
      runs.append(dict(ident, batch_size=64))
      q = quality_curve(times, true_tau_gen(width), q_min=40.0 + n / 8)
      if quality is not None:
        q = [quality(t) for t in times]
      tau_m = true_tau_mem(width, n, seed, alpha)
      f = fmem_curve(times, tau_m) if tau_m > times[1] else [0.0] * len(times)
      gap = gap_curve(times, tau_m / 2)
      for t, qv, fv, gv in zip(times, q, f, gap):
        train = 1.0 - 0.5 * gv
        rows.append(dict(
            ident, step=t, loss=None if t == 0 else train, train_loss=train,
            train_loss_std=LOSS_STD, test_loss=train + gv, test_loss_std=LOSS_STD,
            k=1 / 3, f_mem=fv, f_mem_lo=0.5 * fv, f_mem_hi=min(1.0, 2 * fv),
            f_mem_extra={"0.5": min(1.0, 2 * fv), "0.25": 0.5 * fv},
            ratio_median=0.8, num_samples=500, quality=qv, quality_std=None,
            quality_name="pixel_fd", quality_label=LABEL, wall_time=float(t) / 100,
            unknown_future_key=[1, 2]))
  return config, runs, rows


def write_workdir(path, width, samples=True, **kw):
  config, runs, rows = make_sweep(width, **kw)
  os.makedirs(path, exist_ok=True)
  fileio.atomic_write_json(os.path.join(path, "config.json"), config)
  fileio.atomic_write_json(os.path.join(path, "runs.json"), runs)
  metrics = os.path.join(path, "metrics.jsonl")
  fileio.append_jsonl(metrics, rows)
  # A resume that re-logged the last step: the reader keeps one row per (run, step).
  fileio.append_jsonl(metrics, [r for r in rows if r["step"] == rows[-1]["step"]])
  if samples:
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    for step in (TIMES[-4], TIMES[-1]):
      fig = Figure(figsize=(1, 1))
      FigureCanvasAgg(fig)
      fig.add_subplot().imshow(np.eye(8))
      os.makedirs(os.path.join(path, "samples"), exist_ok=True)
      fig.savefig(os.path.join(path, "samples", f"step_{step:09d}.png"))
  return path


@pytest.fixture(scope="module")
def two_widths(tmp_path_factory):
  root = tmp_path_factory.mktemp("sweeps")
  w16 = write_workdir(str(root / "w16"), 16)
  w32 = write_workdir(str(root / "w32"), 32)
  out = str(root / "combined")
  # The command line, as a user runs it.
  proc = subprocess.run(
      [sys.executable, "-m", "jaxdiff.report", f"--workdir={w16}", f"--workdir={w32}",
       f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=REPO, MPLBACKEND="Agg"))
  assert proc.returncode == 0, proc.stderr
  with open(os.path.join(out, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(out, "report.md")) as f:
    md = f.read()
  return dict(w16=w16, w32=w32, out=out, summary=summary, md=md, stdout=proc.stdout)


@pytest.mark.slow
def test_cli_writes_every_file(two_widths):
  out = two_widths["out"]
  assert "report.md" in two_widths["stdout"]
  for name in ("report.md", "summary.json", "runs.csv", "quality_fmem.png",
               "fmem_collapse.png", "losses.png", "timescales.png", "sensitivity.png",
               "width_scaling.png", "phase_diagram.png"):
    path = os.path.join(out, name)
    assert os.path.getsize(path) > 1000 or name.endswith((".json", ".csv")), name
    if name.endswith(".png"):
      with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


@pytest.mark.slow
def test_summary_per_run_equals_known_onsets(two_widths):
  runs = two_widths["summary"]["runs"]
  assert len(runs) == 16
  censored = 0
  for r in runs:
    w, n, seed = r["width"], r["n"], r["seed"]
    assert r["tau_gen"]["status"] == "observed"
    assert r["tau_gen"]["value"] == pytest.approx(true_tau_gen(w), rel=1e-9)
    tau_m = true_tau_mem(w, n, seed)
    if tau_m > TIMES[-1]:
      censored += 1
      assert r["tau_mem"] == dict(status="right_censored", value=None, bound=TIMES[-1],
                                  lo=TIMES[-1], hi=None, bracket=None)
    else:
      assert r["tau_mem"]["value"] == pytest.approx(tau_m, rel=1e-9)
      assert r["tau_mem"]["lo"] <= tau_m <= (r["tau_mem"]["hi"] or math.inf)
      lo, hi = r["tau_mem"]["bracket"]  # the evaluation bracket the fits use
      assert lo == _prev_time(TIMES, tau_m) and hi == _next_time(TIMES, tau_m)
    assert r["loss_gap_onset"]["value"] == pytest.approx(tau_m / 2, rel=1e-9)
    assert r["best_quality"] == pytest.approx(40.0 + n / 8)
    assert r["num_params"] == NUM_PARAMS[w] and r["lr"] == 1e-3
    assert r["final_step"] == TIMES[-1]
    expected_final = fmem_curve(TIMES, tau_m)[-1] if tau_m < TIMES[-1] else 0.0
    assert r["final_f_mem"] == pytest.approx(expected_final)
  assert censored == 2  # W = 16, n = 64, both seeds
  assert two_widths["summary"]["quality_label"] == LABEL


def _read_runs_csv(path):
  import csv
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def _num(cell):
  return None if cell == "" else float(cell)


@pytest.mark.slow
def test_runs_csv_has_every_run_of_summary_json(two_widths):
  header, rows = _read_runs_csv(os.path.join(two_widths["out"], "runs.csv"))
  assert tuple(header) == RUNS_CSV_COLUMNS
  runs = two_widths["summary"]["runs"]
  assert len(rows) == len(runs) == 16
  assert {r["workdir"] for r in rows} == {two_widths["w16"], two_widths["w32"]}
  censoring = {"observed": "observed", "right_censored": "right", "left_censored": "left"}
  seen = set()
  for row, s in zip(rows, runs):
    for key in ("run", "n", "seed", "index", "width", "num_params"):
      assert int(row[key]) == s[key], key
    assert float(row["lr"]) == s["lr"]
    for name, csv_name in (("tau_gen", "tau_gen"), ("tau_mem", "tau_mem"),
                           ("loss_gap_onset", "loss_gap_onset")):
      o = s[name]
      assert row[f"{csv_name}_censoring"] == censoring[o["status"]]
      seen.add((name, o["status"]))
      for field, col in (("value", csv_name), ("lo", f"{csv_name}_lo"),
                         ("hi", f"{csv_name}_hi")):
        if o[field] is None:
          assert row[col] == "", (col, row[col])
        else:
          assert _num(row[col]) == pytest.approx(o[field], rel=1e-5), col
    if s["tau_mem"]["status"] == "observed":
      assert [_num(row["tau_mem_bracket_lo"]), _num(row["tau_mem_bracket_hi"])] == (
          pytest.approx(s["tau_mem"]["bracket"]))
    else:  # right-censored: no value, lo = the budget, hi open
      assert row["tau_mem"] == row["tau_mem_bracket_lo"] == row["tau_mem_hi"] == ""
      assert _num(row["tau_mem_lo"]) == TIMES[-1]
    for key in ("final_f_mem", "final_quality", "best_quality", "final_step"):
      assert _num(row[key]) == pytest.approx(s[key], rel=1e-5, abs=1e-12), key
    assert row["diverged"] == ""  # these workdirs have no diverged field
  assert ("tau_mem", "right_censored") in seen and ("tau_mem", "observed") in seen
  assert "[runs.csv](runs.csv)" in two_widths["md"]


def test_runs_csv_diverged_flag_and_rounding(tmp_path):
  w = write_workdir(str(tmp_path / "w"), 32, samples=False, ns=(8, 16), seeds=(0,))
  with open(os.path.join(w, "runs.json")) as f:
    runs = json.load(f)
  runs[0]["diverged"] = False
  runs[1]["diverged"] = True
  fileio.atomic_write_json(os.path.join(w, "runs.json"), runs)
  rows = [dict(r, f_mem=0.140000000596046) for r in fileio.read_jsonl(
      os.path.join(w, "metrics.jsonl"))]
  fileio.atomic_write_text(os.path.join(w, "metrics.jsonl"),
                           "".join(json.dumps(r) + "\n" for r in rows))
  sweep = load_workdir(w)
  a = analyze([sweep], settings_from_config(sweep.config))
  text = runs_csv(a)
  assert text.splitlines()[0] == ",".join(RUNS_CSV_COLUMNS)
  import csv
  import io
  parsed = list(csv.DictReader(io.StringIO(text)))
  assert [r["diverged"] for r in parsed] == ["False", "True"]
  # float32 noise rounded; a diverged run is left out of the analysis: its row has no numbers
  assert [r["final_f_mem"] for r in parsed] == ["0.14", ""]
  assert parsed[1]["n"] == "16" and parsed[1]["tau_mem"] == ""
  # a diverged flag in the metrics rows counts too
  assert rows[-1]["run"] == 1 and rows[0]["run"] == 0
  rows[-1]["diverged"] = True
  rows[0]["diverged"] = False
  fileio.atomic_write_text(os.path.join(w, "metrics.jsonl"),
                           "".join(json.dumps(r) + "\n" for r in rows))
  runs[1].pop("diverged")
  runs[0].pop("diverged")
  fileio.atomic_write_json(os.path.join(w, "runs.json"), runs)
  sweep = load_workdir(w)
  a = analyze([sweep], settings_from_config(sweep.config))
  parsed = list(csv.DictReader(io.StringIO(runs_csv(a))))
  assert [r["diverged"] for r in parsed] == ["False", "True"]


@pytest.mark.slow
def test_summary_fits_width_scaling_and_phase_diagram(two_widths):
  s = two_widths["summary"]
  fits = {f["width"]: f for f in s["fits"]}
  c32 = 300.0 * math.sqrt(1.1)  # balanced seeds: geometric mean of the seed factors
  for w in (16, 32):
    f = fits[w]["tau_mem_vs_n"]
    assert f["exponents"]["n"]["value"] == pytest.approx(1.0, abs=1e-9)
    assert f["prefactor"]["value"] == pytest.approx(c32 * 32 / w, rel=1e-9)
    assert f["num_points"] == (8 if w == 32 else 6)  # censored runs left out
    assert fits[w]["tau_mem_over_n"]["value"] == pytest.approx(c32 * 32 / w, rel=1e-9)
    assert fits[w]["tau_gen"]["value"] == pytest.approx(true_tau_gen(w), rel=1e-9)
    assert fits[w]["tau_gen_vs_n"]["exponents"]["n"]["value"] == pytest.approx(0.0, abs=1e-9)
  for w in (16, 32):
    # Censoring-aware: the W = 16 runs censored at n = 64 enter as tau > 25600.
    c = fits[w]["tau_mem_vs_n_censored"]
    assert c["num_runs"] == 8 and c["num_right_censored"] == (2 if w == 16 else 0)
    assert c["interval_method"] == "profile_likelihood"  # 2 seeds: no seed bootstrap
    e = c["exponents"]["n"]
    assert e["lo"] < 1.0 < e["hi"] and abs(e["value"] - 1.0) < 0.1
    sens = fits[w]["tau_mem_sensitivity"]
    assert [d["key"] for d in sens] == ["configured", "strict", "thr_0.005", "final_0.1",
                                        "final_0.2"]
    assert sens[0]["least_squares"] == fits[w]["tau_mem_vs_n"]  # the old fit, kept
    assert sens[0]["num_right_censored"] == (2 if w == 16 else 0)
    assert fits[w]["collapse"]["num_runs"] == (6 if w == 16 else 8)
    assert [d["key"] for d in fits[w]["tau_gen_sensitivity"]] == ["configured", "tol_0.05",
                                                                   "tol_0.2"]
  (wsens,) = s["width_sensitivity"]
  g = wsens["tau_gen"][0]["censored_fit"]["exponents"]["width"]
  assert g["lo"] < -1.0 < g["hi"]
  (ws,) = s["width_scaling"]
  for w in ("16", "32"):
    assert ws["w_tau_gen"][w]["value"] == pytest.approx(96000.0, rel=1e-9)
    assert ws["tau_mem_w_over_n"][w]["value"] == pytest.approx(9600 * math.sqrt(1.1), rel=1e-9)
  assert ws["tau_gen_fit"]["exponents"]["width"]["value"] == pytest.approx(-1.0, abs=1e-9)
  assert ws["tau_mem_fit"]["exponents"]["n"]["value"] == pytest.approx(1.0, abs=1e-9)
  assert ws["tau_mem_fit"]["exponents"]["width"]["value"] == pytest.approx(-1.0, abs=1e-9)
  # Hand-derived from the curves (f_mem read at the evaluation at or before tau).
  got = {(b["width"], b["multiplier"]): (b["n"], b["status"]) for b in s["phase_diagram"]}
  assert got == {
      (16, 1.0): (8, "at_or_below"), (16, 3.0): (32, "observed"),
      (16, 8.0): (None, "beyond_budget"),  # 48000 > 25600
      (32, 1.0): (8, "at_or_below"), (32, 3.0): (32, "observed"), (32, 8.0): (64, "observed"),
  }
  contrast = fits[32]["memorization_contrast"]
  assert contrast["step"] == 3200 and contrast["n_large"] == 64
  assert contrast["f_mem_large"] == 0.0


def _alpha_half_width(width):
  """The 95% half-width of the slope, from scipy's linregress on the uncensored runs."""
  pts = [(n, true_tau_mem(width, n, s)) for n in NS for s in SEEDS
         if true_tau_mem(width, n, s) < TIMES[-1]]
  x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
  fit = stats.linregress(x, y)
  return stats.t.ppf(0.975, len(pts) - 2) * fit.stderr


@pytest.mark.slow
def test_report_md_states_the_numbers(two_widths):
  md = two_widths["md"]
  for w in (16, 32):
    # the least-squares fit (the old method) stays in the sensitivity table
    h = _alpha_half_width(w)
    assert f"| profile likelihood | 1.00 [{1 - h:.2f}, {1 + h:.2f}] |" in md
  assert "Under the configured definition (f_mem > 0.01 with f_mem_lo > 0), tau_mem grows" in md
  assert "Across the 6 onset definitions of the sensitivity table" in md
  assert "## Sensitivity of the exponents to the onset definition" in md
  assert "| collapse of f_mem / f_mem(τ_max) against τ / n^alpha (the paper's criterion) |" in md
  assert "tau_gen = c W^beta: beta" in md and "every interval containing -1" in md
  assert "## Protocol" in md and "Differences from the paper's protocol" in md
  assert "not recorded in this workdir (no reference_sets.json)" in md
  assert "tau_gen ≈ 3000" in md and "tau_gen ≈ 6000" in md
  assert "> 25600" in md  # the censored group and runs
  assert "right-censored" in md
  assert "W·tau_gen = 96000 (W = 16), 96000 (W = 32)" in md
  assert "the boundary moves from n = 8 to n = 64" in md
  # never call a substitute FID (only the paper's metric, in the differences, is FID)
  assert LABEL in md and "FID" not in md.replace("(paper: FID (Inception pool3))", "")
  for key in ("tau_gen", "tau_mem", "loss_gap_onset", "phase_diagram"):
    assert f"**{key}**" in md
  assert f"f_mem > {THR:g} with its bootstrap 95% lower bound" in md
  # Figures and the latest sample grids are linked with paths that resolve.
  out = two_widths["out"]
  links = [l.split("](")[1].rstrip(")") for l in md.splitlines() if l.startswith("![")]
  assert "timescales.png" in links and "phase_diagram.png" in links
  assert "../w32/samples/step_000025600.png" in links
  assert "../w32/samples/step_000003200.png" in links  # the first grid after tau_gen = 3000
  assert "../w16/samples/step_000025600.png" in links
  for link in links:
    assert os.path.exists(os.path.join(out, link)), link


def test_single_workdir_default_out_and_too_few_memorized(tmp_path):
  # A budget of 1600 steps: no run memorizes, and the quality still falls as 1/t, so it
  # enters its band only at the last evaluation (tau_gen right-censored).
  wd = write_workdir(str(tmp_path / "short"), 32, samples=False, times=TIMES[:6],
                     quality=lambda t: 1e5 / max(t, 1))
  path = report.write_report([wd])
  assert path == os.path.join(wd, "report", "report.md")
  with open(path) as f:
    md = f.read()
  assert "Too few runs memorized within the budget to fit tau_mem(n)" in md
  assert "values of n): 0 of 8 runs" in md
  assert "right-censored at 1600 steps" in md
  assert "tau_gen is not resolved in any run" in md
  with open(os.path.join(wd, "report", "summary.json")) as f:
    s = json.load(f)
  assert all(r["tau_mem"]["status"] == "right_censored" for r in s["runs"])
  assert all(r["tau_gen"]["status"] == "right_censored" for r in s["runs"])
  assert s["fits"][0]["tau_mem_vs_n"] is None
  assert not os.path.exists(os.path.join(wd, "report", "phase_diagram.png"))


@pytest.mark.parametrize("alpha, phrase", [
    (0.5, "every interval lies below 1: growing with n, but more slowly than the paper's "
          "alpha = 1, under every definition"),
    (0.0, "no significant growth with n"),
    # the configured fit alone says "faster than n"; the collapse and the 20% definition
    # do not, so the sentence says the definition decides
    (1.5, "above 1 under 4 (f_mem > 0.01 with f_mem_lo > 0 (configured); f_mem > 0 (the "
          "paper's wording); f_mem > 0.005 with f_mem_lo > 0; f_mem > 10% of the run's final "
          "f_mem), below 1 under 1 (collapse"),
])
def test_interpretation_is_written_from_the_whole_table(alpha, phrase):
  config, runs, rows = make_sweep(32, times=[0] + [100 * 2 ** k for k in range(12)], alpha=alpha)
  sweep = WorkdirFiles("mem", config, runs, rows)
  a = analyze([sweep], settings_from_config(config))
  fit = a.series[0].tau_mem_fit
  assert fit.alpha.value == pytest.approx(alpha, abs=1e-9)
  cfit = a.series[0].tau_mem_cfit
  assert cfit.alpha.lo < alpha < cfit.alpha.hi
  if alpha == 1.5:
    assert cfit.alpha.lo > 1.0  # the configured definition alone excludes 1
  md = markdown(a, [], "out")
  assert phrase in md


def test_three_seeds_use_the_seed_bootstrap():
  config, runs, rows = make_sweep(32, times=[0] + [100 * 2 ** k for k in range(12)],
                                  seeds=(0, 1, 2))
  a = analyze([WorkdirFiles("s3", config, runs, rows)],
                     settings_from_config(config, {"n_bootstrap": 200}))
  fit = a.series[0].tau_mem_cfit
  assert fit.interval_method == "cluster_bootstrap" and "3 seeds" in fit.interval_detail
  assert fit.alpha.lo < 1.0 < fit.alpha.hi
  assert a.series[0].collapse.interval_method == "cluster_bootstrap"
  md = markdown(a, [], "out")
  assert "seed bootstrap" in md and "bootstrap over the 3 seeds" in md


def test_exponent_verdict_uses_every_entry():
  e = timescales.Estimate
  v = exponent_verdict([("a", e(1.2, 1.05, 1.35)), ("b", e(0.9, 0.8, 0.99)),
                               ("c", e(1.0, 0.9, 1.1))], 1.0)
  assert v["kind"] == "mixed" and v["above"] == ["a"] and v["below"] == ["b"]
  assert (v["min"], v["max"], v["lo"], v["hi"]) == (0.9, 1.2, 0.8, 1.35)
  assert exponent_verdict([("a", e(1.2, 1.05, 1.35)), ("b", e(1.1, 1.01, None))],
                                 1.0)["kind"] == "all_above"
  assert exponent_verdict([("a", e(0.9, None, 1.2))], 1.0)["kind"] == "all_contain"
  assert exponent_verdict([], 1.0)["kind"] == "none"


def test_loss_gap_open_at_the_first_evaluation_is_left_censored():
  config, runs, rows = make_sweep(32)
  for r in rows:  # n = 8, 16, 32: the gap is wide open from the first evaluation on
    if r["n"] <= 32:
      r["test_loss"] = r["train_loss"] + 1.0
  a = analyze([WorkdirFiles("gap", config, runs, rows)], settings_from_config(config))
  (text,) = interpret_loss_gap(a.series[0])
  assert ("is already open beyond its noise at the first evaluation (step 0) in 6 of 8 runs "
          "(left-censored" in text)
  assert "opens beyond its noise during training in 2 of 8 runs" in text
  for r in rows:
    r["test_loss"] = r["train_loss"] + 1.0
  a = analyze([WorkdirFiles("gap", config, runs, rows)], settings_from_config(config))
  (text,) = interpret_loss_gap(a.series[0])
  assert "in 8 of 8 runs" in text and "during training" not in text
  assert "Evaluate earlier" in text


def test_protocol_section_and_differences(tmp_path):
  from configs import digits, gmm
  from jaxdiff.findings import protocol
  cfg = json.loads(fileio.dumps(digits.get_config().to_dict()))
  runs = [{"run": 0, "n": 8, "num_params": 116_416}]
  diffs = protocol.differences(cfg, runs, "pixel_fd")
  joined = "\n".join(diffs)
  for key in ("optim.name", "train.batch_policy", "eval.ddim_eta", "eval.num_samples",
              "eval.quality", "data.n_train"):
    assert f"`{key}`" in joined
  assert "`diffusion.num_steps`" not in joined and "`eval.k`" not in joined  # as in the paper
  assert "116,416" in joined
  # The paper's own setting has no differences from itself (CelebA defaults of base.py).
  base_cfg = json.loads(fileio.dumps(base.get_config().to_dict()))
  base_cfg["data"]["n_train"] = [128, 32768]
  assert protocol.differences(base_cfg, [{"num_params": 4_023_000}], "fid") == []
  g = json.loads(fileio.dumps(gmm.get_config().to_dict()))
  g["data"]["center"] = True
  gd = protocol.differences(g, [{"num_params": 102_024}], "gmm_kl")
  assert any("`data.center` = True" in d for d in gd) and protocol.study_of(g) == "gmm"
  lines = "\n".join(protocol.protocol_lines(cfg, runs, str(tmp_path), "pixel FD", "pixel_fd"))
  for text in ("8×8 grayscale", "n ∈ {8, 16, 32, 64, 128}", "seeds {0, 1}", "116,416 parameters",
               "adam, lr 0.001", "B_max = 64, B = B_max for every n, drawn with replacement",
               "32,000 optimizer steps", "DDIM, 100 steps, eta = 1", "500 samples per run",
               "EMA none", "not recorded"):
    assert text in lines, text
  (tmp_path / "reference_sets.json").write_text(json.dumps(
      {"source": "test", "sets": [[0, 1000]], "description": "the first 1,000 test digits."}))
  lines = "\n".join(protocol.protocol_lines(cfg, runs, str(tmp_path), "pixel FD", "pixel_fd"))
  assert "Reference images: the first 1,000 test digits." in lines
  assert "not recorded" not in lines


def test_settings_from_config_and_overrides():
  config, _, _ = make_sweep(32)
  s = settings_from_config(config)
  assert (s["tau_gen_tol"], s["tau_mem_threshold"]) == (0.1, 0.01)
  assert settings_from_config(config, {"report.tau_gen_tol": 0.2})["tau_gen_tol"] == 0.2
  assert settings_from_config(config, {"report": {"tau_mem_threshold": 0.0}})[
      "tau_mem_threshold"] == 0.0
  with pytest.raises(ConfigError, match="report.tau_mem_threshold"):
    settings_from_config(config, {"tau_mem_threshold": 1.5})
  assert s["sensitivity_final_fractions"] == (0.1, 0.2) and s["n_bootstrap"] == 1000
  with pytest.raises(ConfigError, match="report.sensitivity_final_fractions"):
    settings_from_config(config, {"sensitivity_final_fractions": (0.0,)})
  with pytest.raises(ConfigError, match="report.n_bootstrap"):
    settings_from_config(config, {"n_bootstrap": 5})


def test_default_settings_are_base_configs_report_section():
  from jaxdiff.findings import settings
  report = base.get_config().report.to_dict()
  assert settings.defaults() == {k: v for k, v in report.items() if k != "auto"}
  # A config.json written before a key existed gets base.py's value for it.
  config, _, _ = make_sweep(32)
  config["report"].pop("loss_gap_sigmas", None)
  assert settings_from_config(config)["loss_gap_sigmas"] == report["loss_gap_sigmas"]


def test_missing_or_foreign_workdirs_raise_one_clear_error(tmp_path):
  with pytest.raises(WorkdirError, match="does not exist"):
    report.write_report([str(tmp_path / "nowhere")])
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(WorkdirError, match=r"empty/config.json is missing"):
    load_workdir(str(empty))
  (empty / "config.json").write_text('{"model": {"lr": 1}}')
  with pytest.raises(WorkdirError, match="config.json is not a jaxdiff config"):
    load_workdir(str(empty))
  (empty / "config.json").write_text("{not json")
  with pytest.raises(WorkdirError, match="config.json is not valid JSON"):
    load_workdir(str(empty))
  wd = write_workdir(str(tmp_path / "wd"), 32, samples=False)
  os.remove(os.path.join(wd, "metrics.jsonl"))
  with pytest.raises(WorkdirError, match="metrics.jsonl is missing"):
    load_workdir(wd)
  with open(os.path.join(wd, "runs.json"), "w") as f:
    f.write("[]")
  with pytest.raises(WorkdirError, match="runs.json is not a run table"):
    load_workdir(wd)


def test_cli_error_exit(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "jaxdiff.report", f"--workdir={tmp_path / 'missing'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 2
  assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_sparse_rows_without_quality_or_losses(tmp_path):
  # Optional keys missing or null (quality "none", losses not computed), one run, one n.
  wd = tmp_path / "sparse"
  config, runs, _ = make_sweep(32, ns=(8,))
  runs = runs[:1]
  rows = [dict(step=t, run=0, n=8, seed=0, index=0, lr=1e-3, width=32, quality=None,
               quality_name="none", quality_label="none", f_mem=f, f_mem_lo=None) for t, f in zip(TIMES, fmem_curve(TIMES, 2400.0))]
  wd.mkdir()
  fileio.atomic_write_json(str(wd / "config.json"), config)
  fileio.atomic_write_json(str(wd / "runs.json"), runs)
  fileio.append_jsonl(str(wd / "metrics.jsonl"), rows)
  path = report.write_report([str(wd)], str(tmp_path / "out"))
  with open(path) as f:
    md = f.read()
  assert "No quality metric was computed" in md
  assert "quality metric: none computed." in md  # not the placeholder label "none"
  assert "Too few runs memorized" in md  # one n cannot give a slope
  with open(tmp_path / "out" / "summary.json") as f:
    s = json.load(f)
  (run,) = s["runs"]
  assert run["tau_gen"]["status"] == "undefined" and run["best_quality"] is None
  assert run["tau_mem"]["value"] == pytest.approx(2400.0, rel=1e-9)  # threshold alone
  assert run["loss_gap_onset"]["status"] == "undefined"
  assert sorted(os.listdir(tmp_path / "out")) == [
      "fmem_collapse.pdf", "fmem_collapse.png", "quality_fmem.pdf", "quality_fmem.png",
      "report.md", "runs.csv", "summary.json", "timescales.pdf", "timescales.png"]
