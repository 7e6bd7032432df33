"""Tests of jaxdiff.findings.figures on one small synthetic sweep: what a reader sees in each
figure.

The sweep: n = 8, 16, 32, 64 x 2 seeds at one width, evaluations at 0 and 100 * 2^k up to
25600; tau_mem = 500 n x (1, 1.1) for seeds (0, 1), so n = 64 (32000, 35200) is
right-censored; f_mem rises from 0 after tau_mem and ends far below 1 for the large n.
Every figure function's Figure is captured (the real _save still writes the files) so
that legends, lines and tick labels can be read back.
"""

import json
import math
import os
import re

import numpy as np
import pytest

from configs import base
from jaxdiff import fileio
from jaxdiff.findings import figures
from jaxdiff.findings.analysis import analyze
from jaxdiff.findings.formatting import fmt_slope
from jaxdiff.findings.settings import settings_from_config
from jaxdiff.findings.workdirs import load_workdir

TIMES = [0] + [100 * 2 ** k for k in range(9)]
NS = (8, 16, 32, 64)
SEED_FACTOR = {0: 1.0, 1: 1.1}


def _tau_mem(n, seed):
  return 500.0 * n * SEED_FACTOR[seed]


def _write_workdir(path):
  config = base.get_config()
  config.data.dataset = "digits"
  config.data.n_train = NS
  config.data.seeds = tuple(SEED_FACTOR)
  config.model.name = "mlp"
  config.model.width = 32
  config.report.n_bootstrap = 50
  config = json.loads(fileio.dumps(config.to_dict()))
  runs, rows = [], []
  for n in NS:
    for seed in SEED_FACTOR:
      ident = dict(run=len(runs), n=n, seed=seed, index=0, lr=1e-3, width=32,
                   num_params=1000, dataset="digits", model="mlp")
      runs.append(dict(ident, batch_size=64))
      tau = _tau_mem(n, seed)
      for t in TIMES:
        f = 0.0 if t < tau else min(0.95, 0.05 + 0.25 * math.log2(t / tau))
        q = 40.0 + n / 8 + 400.0 / (1.0 + t / 300.0)
        train = 1.0 / (1.0 + t / 1000.0)
        rows.append(dict(ident, step=t, train_loss=train, train_loss_std=0.01,
                         test_loss=train + 0.5 * f, test_loss_std=0.01, f_mem=f,
                         f_mem_lo=0.8 * f, f_mem_hi=min(1.0, 1.2 * f), quality=q,
                         quality_name="pixel_fd", quality_label="pixel-space FD"))
  os.makedirs(path, exist_ok=True)
  fileio.atomic_write_json(os.path.join(path, "config.json"), config)
  fileio.atomic_write_json(os.path.join(path, "runs.json"), runs)
  fileio.append_jsonl(os.path.join(path, "metrics.jsonl"), rows)
  return path


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
  """(analysis, out_dir, {png name: Figure}, [(png name, caption)])."""
  workdir = _write_workdir(str(tmp_path_factory.mktemp("sweep") / "w"))
  sweep = load_workdir(workdir)
  analysis = analyze([sweep], settings_from_config(sweep.config))
  out = os.path.join(workdir, "report")
  os.makedirs(out)
  captured = {}
  real_save = figures.save_figure

  def save(fig, path):
    real_save(fig, path)
    captured[os.path.basename(path)] = fig

  mp = pytest.MonkeyPatch()
  mp.setattr(figures, "save_figure", save)
  try:
    written = figures.write_figures(analysis, out)
  finally:
    mp.undo()
  return analysis, out, captured, written


def _axes_titled(fig, prefix):
  found = [ax for ax in fig.axes if ax.get_title().startswith(prefix)]
  assert found, [ax.get_title() for ax in fig.axes]
  return found[0]


def _legend_texts(ax):
  leg = ax.get_legend()
  return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def _line(ax, label_start):
  lines = [l for l in ax.get_lines() if l.get_label().startswith(label_start)]
  assert len(lines) == 1, [l.get_label() for l in ax.get_lines()]
  return lines[0]


def _log_slope(line):
  x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
  return math.log(y[-1] / y[0]) / math.log(x[-1] / x[0])


@pytest.mark.slow
def test_fit_legends_carry_the_exponent_interval(drawn):
  a, _, figs, _ = drawn
  s = a.series[0]
  ax = _axes_titled(figs["timescales.png"], "τ_mem")
  texts = _legend_texts(ax)
  e = s.tau_mem_cfit.alpha
  expected = f"censoring-aware fit: n^α, α = {fmt_slope(e)}"
  assert expected in texts, texts
  assert re.search(r"\[-?\d+\.\d\d, -?\d+\.\d\d\]", expected)  # the interval itself
  ls = s.tau_mem_fit.alpha
  assert f"least squares (observed): n^α, α = {fmt_slope(ls)}" in texts
  # the fit line drawn is the one named: its log-log slope is the estimate
  assert _log_slope(_line(ax, "censoring-aware fit")) == pytest.approx(e.value, rel=1e-6)


@pytest.mark.slow
def test_reference_lines_have_the_papers_exponents(drawn):
  a, _, figs, _ = drawn
  fig = figs["timescales.png"]
  ref_mem = _line(_axes_titled(fig, "τ_mem"), "reference n^1")
  assert _log_slope(ref_mem) == pytest.approx(1.0, abs=1e-9)
  # it passes through the censoring-aware fit at the geometric mean of n
  cfit = a.series[0].tau_mem_cfit
  n_c = math.exp(np.mean(np.log(NS)))
  x, y = ref_mem.get_xdata(), ref_mem.get_ydata()
  assert np.interp(math.log(n_c), np.log(x), np.log(y)) == pytest.approx(
      math.log(cfit.predict(np.array([n_c]))[0]), abs=1e-3)
  ref_gen = _line(_axes_titled(fig, "τ_gen"), "reference n^0")
  assert _log_slope(ref_gen) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_onset_markers_sit_on_the_curves(drawn):
  a, _, figs, _ = drawn
  ax = _axes_titled(figs["quality_fmem.png"], "f_mem")
  dots = [l for l in ax.get_lines() if l.get_marker() == "o" and l.get_label().startswith("_")]
  xs = sorted(float(l.get_xdata()[0]) for l in dots)
  expected = sorted(g.tau_mem.estimate.value for g in a.series[0].groups
                    if g.tau_mem.estimate is not None)
  assert len(expected) == 3 and xs == pytest.approx(expected)
  for l in dots:  # on the mean curve: f_mem at tau_mem is between 0 and the threshold band
    assert 0.0 <= float(l.get_ydata()[0]) <= 0.2
  # n = 64 never memorizes: an open triangle at the budget
  right = [l for l in ax.get_lines() if l.get_marker() == ">"]
  assert [float(l.get_xdata()[0]) for l in right] == [TIMES[-1]]
  assert any("τ_mem per n" in t for t in _legend_texts(ax))
  ax_q = _axes_titled(figs["quality_fmem.png"], "pixel-space FD")
  gen_dots = [l for l in ax_q.get_lines() if l.get_marker() == "o"
              and l.get_label().startswith("_")]
  assert len(gen_dots) == len(NS)


@pytest.mark.slow
def test_log_tick_labels_are_plain_numbers(drawn):
  _, _, figs, _ = drawn
  pattern = re.compile(r"^(\d{1,3}(,\d{3})?|\d+(\.\d+)?[kM]?|0\.\d+)$")
  seen = set()
  for name, fig in figs.items():
    fig.canvas.draw()
    for ax in fig.axes:
      for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale != "log":
          continue
        labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
        assert len(labels) >= 2, (name, ax.get_title(), labels)
        for text in labels + [t.get_text() for t in axis.get_ticklabels(minor=True)]:
          assert text == "" or pattern.match(text), (name, ax.get_title(), text)
        seen.update(labels)
  assert {"100", "1,000", "10k"} <= seen, seen


def test_exponent_text_is_the_reports():
  from jaxdiff.findings import timescales
  for e in (timescales.Estimate(1.2107, 1.0328, 1.3767), timescales.Estimate(-0.001, -0.5, 0.49),
            timescales.Estimate(0.7)):
    assert figures.fmt_slope(e) == fmt_slope(e)
  assert figures.fmt_slope(timescales.Estimate(1.2107, 1.0328, 1.3767)) == "1.21 [1.03, 1.38]"


def test_plain_number():
  assert [figures.plain_number(v) for v in (0.01, 0.5, 5, 100, 1000, 2500, 10000, 250000,
                                            1e6)] == ["0.01", "0.5", "5", "100", "1,000",
                                                      "2,500", "10k", "250k", "1M"]


@pytest.mark.slow
def test_collapse_shows_f_mem_itself_and_the_normalised_inset(drawn):
  a, _, figs, written = drawn
  fig = figs["fmem_collapse.png"]
  raw = _axes_titled(fig, "f_mem against τ/n (α = 1)")
  fitted = _axes_titled(fig, "against τ/n^α")
  inset = _axes_titled(fig, "f_mem / f_mem(τ_max)")
  g32 = next(g for g in a.series[0].groups if g.n == 32)
  final = g32.curves["f_mem"].mean[-1]
  assert 0.05 < final < 0.5  # far from saturation: the case the normalisation inflates
  line_raw = _line(raw, "n=32")
  assert max(line_raw.get_ydata()) == pytest.approx(final)
  assert max(_line(fitted, "n=32").get_ydata()) == pytest.approx(final)
  # the inset still divides by the final value, drawn dotted for an unsaturated run
  inset_line = _line(inset, "n=32")
  assert max(inset_line.get_ydata()) == pytest.approx(1.0)
  assert inset_line.get_linestyle() == ":"
  alpha = a.series[0].tau_mem_cfit.alpha.value
  assert line_raw.get_xdata()[-1] * 32 == pytest.approx(TIMES[-1])
  assert _line(fitted, "n=32").get_xdata()[-1] * 32 ** alpha == pytest.approx(TIMES[-1])
  caption = dict(written)["fmem_collapse.png"]
  assert "saturates at 1" in caption and "stretches" in caption


@pytest.mark.slow
def test_train_and_test_losses_differ_in_more_than_marker(drawn):
  _, _, figs, _ = drawn
  ax = _axes_titled(figs["losses.png"], "losses")
  train = _line(ax, "n=8")
  test = [l for l in ax.get_lines() if l.get_color() == train.get_color() and l is not train]
  assert len(test) == 1
  assert train.get_linestyle() != test[0].get_linestyle()
  assert train.get_linewidth() > test[0].get_linewidth()
  texts = _legend_texts(_axes_titled(figs["losses.png"], "against τ/n"))
  assert texts == ["train loss", "test loss"]


@pytest.mark.slow
def test_every_figure_has_a_vector_copy(drawn, tmp_path):
  a, out, _, written = drawn
  names = [n for n, _ in written]
  assert {"quality_fmem.png", "fmem_collapse.png", "losses.png", "timescales.png",
          "sensitivity.png"} <= set(names)
  for name, caption in written:
    png = os.path.join(out, name)
    pdf = figures.vector_path(png)
    with open(png, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(pdf, "rb") as f:
      assert f.read(5) == b"%PDF-"
    assert f"({os.path.basename(pdf)})" in caption
  # one width: no width figures, and stale copies of an earlier report are removed
  stale = [os.path.join(out, "phase_diagram" + ext) for ext in (".png", ".pdf")]
  for p in stale:
    fileio.atomic_write_bytes(p, b"old")
  figures.write_figures(a, out)
  assert not any(os.path.exists(p) for p in stale)
