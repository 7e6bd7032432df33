"""Tests of jaxdiff.findings.timescales on synthetic curves with known onsets."""

import math

import numpy as np
import pytest

from jaxdiff.findings import timescales

# Evaluation grid doubling from 100 steps (step 0 included), like a log-spaced sweep.
TIMES = np.array([0] + [100 * 2 ** k for k in range(10)], dtype=float)  # up to 51200


def _log_linear(t, t_a, v_a, t_b, v_b):
  """Values of the line through (log t_a, v_a), (log t_b, v_b) at t."""
  t = np.asarray(t, float)
  with np.errstate(divide="ignore"):
    return v_a + (v_b - v_a) * (np.log(t) - math.log(t_a)) / (math.log(t_b) - math.log(t_a))


# ------------------------------------------------------------------ interpolation


def test_log_time_crossing_exact_on_log_linear_segment():
  t0, t1, tau = 800.0, 1600.0, 1111.0
  # v linear in log t with v(tau) = level.
  v0, v1 = _log_linear([t0, t1], tau, 0.5, 2 * tau, 1.5)
  assert timescales.log_time_crossing(t0, t1, v0, v1, 0.5) == pytest.approx(tau, rel=1e-12)
  # Clipped to the bracket, linear in t from step 0.
  assert timescales.log_time_crossing(t0, t1, 0.0, 1.0, 2.0) == t1
  assert timescales.log_time_crossing(t0, t1, 0.0, 1.0, -1.0) == t0
  assert timescales.log_time_crossing(0.0, 100.0, 0.0, 1.0, 0.25) == pytest.approx(25.0)


# ------------------------------------------------------------------ tau_gen


def _quality_curve(tau_g, q_min=40.0, tol=0.1, times=TIMES):
  """Falls log-linearly through q_min (1 + tol) exactly at tau_g, flat at q_min afterwards."""
  above = q_min * (1 + tol * (1 + np.log(tau_g / np.maximum(times, 1e-9)) / math.log(2)))
  t_in = times[np.searchsorted(times, tau_g)]  # first evaluation at or after tau_g
  return np.where(times <= t_in, np.maximum(above, q_min), q_min) + np.where(times == 0, 100, 0)


@pytest.mark.parametrize("tau_g", [150.0, 1000.0, 3000.0, 7777.0])
def test_tau_gen_exact_interpolation(tau_g):
  q = _quality_curve(tau_g)
  onset = timescales.tau_gen(TIMES, q, tol=0.1)
  assert onset.status == timescales.OBSERVED
  assert onset.value == pytest.approx(tau_g, rel=1e-10)
  assert onset.lo < onset.value <= onset.hi
  assert onset.hi / onset.lo == 2.0


def test_tau_gen_non_monotone_takes_the_final_entry():
  q = _quality_curve(3000.0)
  # An early dip into the band at 400 steps that bounces out again does not count.
  q_dip = q.copy()
  q_dip[TIMES == 400] = 42.0
  assert timescales.tau_gen(TIMES, q_dip, tol=0.1).value == pytest.approx(3000.0, rel=1e-10)
  # Quality degrading after its minimum (e.g. KL once the model memorizes): "until=min"
  # still gives the entry before the minimum, "until=end" is undefined.
  q_late = q.copy()
  q_late[TIMES >= 25600] = 80.0
  assert timescales.tau_gen(TIMES, q_late, tol=0.1).value == pytest.approx(3000.0, rel=1e-10)
  assert timescales.tau_gen(TIMES, q_late, tol=0.1, until="end").status == timescales.UNDEFINED
  # Missing values (None) and an unsorted order are tolerated.
  order = np.arange(TIMES.size)[::-1]
  q_none = [None if t == 800 else v for t, v in zip(TIMES, q)]
  onset = timescales.tau_gen(TIMES[order], np.asarray(q_none, object)[order], tol=0.1)
  assert onset.value == pytest.approx(3000.0, rel=1e-10)


def test_tau_gen_censoring_and_noise_floor():
  flat = np.full(TIMES.size, 40.0)
  left = timescales.tau_gen(TIMES[1:], flat[1:])
  assert left.status == timescales.LEFT_CENSORED and left.bound == 100.0 and left.value is None
  # Still falling at the last evaluation: in the band only there -> right-censored.
  falling = 1000.0 / np.maximum(TIMES, 1)
  right = timescales.tau_gen(TIMES, falling)
  assert right.status == timescales.RIGHT_CENSORED and right.value is None
  assert right.bound == TIMES[-2]
  assert timescales.tau_gen(TIMES, [None] * TIMES.size).status == timescales.UNDEFINED
  # A noisy plateau: its minimum (12800) follows a value out of the band (6400), so the
  # onset is the re-entry; with the metric's std given, the band is at least 2 std wide
  # and the whole descent below 1.4 counts.
  q = _quality_curve(3000.0, q_min=1.0, tol=0.1)
  noisy = q.copy()
  noisy[TIMES >= 6400] += [0.3, 0.0, 0.25, 0.1]
  bare = timescales.tau_gen(TIMES, noisy, tol=0.1)
  assert (bare.lo, bare.hi) == (6400.0, 12800.0)
  with_std = timescales.tau_gen(TIMES, noisy, tol=0.1, quality_std=np.full(TIMES.size, 0.2))
  assert (with_std.lo, with_std.hi) == (200.0, 400.0)
  assert with_std.value == pytest.approx(200 * 2 ** ((1.4 - noisy[2]) / (noisy[3] - noisy[2])))


def test_tau_gen_absolute_tolerance_for_a_metric_near_zero():
  # A KL estimate falls to ~0.01 and fluctuates: 10% of its minimum is below its noise.
  t = np.array([100, 200, 400, 800, 1600, 3200, 6400, 12800], float)
  kl = np.array([1.0, 0.3, 0.05, 0.012, 0.008, 0.011, 0.009, 0.013])
  rel = timescales.tau_gen(t, kl, tol=0.1)
  assert (rel.lo, rel.hi) == (800.0, 1600.0)
  absolute = timescales.tau_gen(t, kl, tol=0.1, abs_tol=0.01)  # band: KL <= 0.018
  assert (absolute.lo, absolute.hi) == (400.0, 800.0)
  assert absolute.value == pytest.approx(400 * 2 ** ((0.018 - 0.05) / (0.012 - 0.05)))


# ------------------------------------------------------------------ tau_mem


def _fmem_curve(tau_m, threshold=0.01, times=TIMES):
  """Zero up to the evaluation before tau_m, then log-linear through `threshold` at tau_m."""
  t_prev = times[np.searchsorted(times, tau_m) - 1]
  rise = threshold * np.log(np.maximum(times, 1e-9) / t_prev) / math.log(tau_m / t_prev)
  return np.clip(np.where(times > t_prev, rise, 0.0), 0.0, 0.9)


@pytest.mark.parametrize("tau_m", [300.0, 2400.0, 4800.0, 19200.0 * 1.1])
def test_tau_mem_exact_interpolation(tau_m):
  f = _fmem_curve(tau_m)
  onset = timescales.tau_mem(TIMES, f, 0.5 * f, np.minimum(1.0, 1.5 * f), threshold=0.01)
  assert onset.status == timescales.OBSERVED
  assert onset.value == pytest.approx(tau_m, rel=1e-10)
  assert onset.lo <= onset.value <= onset.hi


def test_tau_mem_interval_from_bootstrap_band():
  tau_m = 4800.0
  f = _fmem_curve(tau_m)
  # f_mem_lo = f / 2 crosses 1% later than f (log-linear: exactly at 3200 (4800/3200)^2),
  # beyond the evaluation bracket [3200, 6400]; f_mem_hi crossing inside the bracket
  # leaves the bracket's start as the lower end.
  onset = timescales.tau_mem(TIMES, f, 0.5 * f, 2.0 * f, threshold=0.01)
  assert onset.hi == pytest.approx(3200 * 1.5 ** 2, rel=1e-10)
  assert onset.lo == 3200.0
  assert onset.bracket == (3200.0, 6400.0)  # the evaluation bracket, kept for the fits
  # A bootstrap upper bound above 1% from 1600 on moves the lower end before the bracket.
  hi = np.where(TIMES >= 1600, 0.02, 0.0)
  early = timescales.tau_mem(TIMES, f, 0.5 * f, hi, threshold=0.01)
  assert early.lo == pytest.approx(800 * 2 ** 0.5, rel=1e-10)
  assert early.value == pytest.approx(tau_m, rel=1e-10)
  # The lower bound never reaching the threshold leaves the interval open above.
  open_hi = timescales.tau_mem(TIMES, f, np.minimum(0.005, 0.5 * f), 2 * f, threshold=0.01)
  assert open_hi.observed and open_hi.hi is None


def test_tau_mem_needs_the_lower_bound_above_zero():
  f = np.where(TIMES >= 1600, 0.05, 0.0)
  lo = np.where(TIMES >= 6400, 0.01, 0.0)  # bootstrap interval touches 0 until 6400
  onset = timescales.tau_mem(TIMES, f, lo, threshold=0.01)
  assert onset.value == 6400.0  # f was already above 1% at 3200: no interpolation
  # Without the lower bound the threshold alone decides (log-linear from 800 to 1600).
  assert timescales.tau_mem(TIMES, f, threshold=0.01).value == pytest.approx(800 * 2 ** 0.2)
  # The paper's strict version (threshold 0): the onset is the last zero evaluation.
  assert timescales.tau_mem(TIMES, f, threshold=0.0).value == 800.0


def test_tau_mem_censored_and_noisy():
  zero = np.zeros(TIMES.size)
  onset = timescales.tau_mem(TIMES, zero, zero, zero)
  assert onset.status == timescales.RIGHT_CENSORED and onset.value is None
  assert onset.bound == TIMES[-1]
  below = np.full(TIMES.size, 0.009)  # never above 1%, even with lo > 0
  assert timescales.tau_mem(TIMES, below, below / 2).status == timescales.RIGHT_CENSORED
  left = timescales.tau_mem(TIMES[1:], np.full(TIMES.size - 1, 0.2), np.full(TIMES.size - 1, 0.1))
  assert left.status == timescales.LEFT_CENSORED and left.bound == 100.0
  assert timescales.tau_mem(TIMES, [None] * TIMES.size).status == timescales.UNDEFINED
  # Binomial noise on 500 samples around a known onset: the estimate stays in the
  # bracket around the true crossing and the bootstrap interval covers it.
  rng = np.random.default_rng(1)
  tau_m, hits = 4800.0, 0
  for _ in range(20):
    p = _fmem_curve(tau_m, threshold=0.01)
    p = np.where(TIMES >= 12800, 0.2, p)
    f = rng.binomial(500, p) / 500
    boot = rng.binomial(500, np.repeat(f[None], 200, 0)) / 500
    lo, hi = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    onset = timescales.tau_mem(TIMES, f, lo, hi, threshold=0.01)
    assert onset.observed and 1600 <= onset.value <= 12800
    hits += onset.lo <= tau_m <= (onset.hi or np.inf)
  assert hits >= 17


# ------------------------------------------------------------------ loss gap


def test_loss_gap_onset():
  s = 0.01
  t_gap = 2500.0
  noise = 2 * math.sqrt(2) * s
  gap = np.maximum(0.0, noise * (1 + np.log(np.maximum(TIMES, 1e-9) / t_gap) / math.log(2)))
  train = 1.0 - 0.5 * gap
  test = train + gap
  std = np.full(TIMES.size, s)
  onset = timescales.loss_gap_onset(TIMES, train, test, std, std, sigmas=2.0)
  assert onset.value == pytest.approx(t_gap, rel=1e-10)
  assert (onset.lo, onset.hi) == (1600.0, 3200.0)
  # Without stds any positive gap counts: the onset moves to the last evaluation with no
  # gap (800; the gap leaves 0 at 1250, between 800 and 1600).
  no_std = timescales.loss_gap_onset(TIMES, train, test)
  assert no_std.value == 800.0
  # A gap inside its noise is right-censored.
  cens = timescales.loss_gap_onset(TIMES, train, train + 0.5 * noise, std, std)
  assert cens.status == timescales.RIGHT_CENSORED and cens.bound == TIMES[-1]


# ------------------------------------------------------------------ statistics


def test_mean_interval_and_geometric_mean():
  est = timescales.mean_interval([1.0, 3.0])
  t975_1 = 12.706204736174707  # Student t, 1 dof, 97.5% quantile
  assert est.value == 2.0
  assert est.lo == pytest.approx(2.0 - t975_1) and est.hi == pytest.approx(2.0 + t975_1)
  assert timescales.mean_interval([5.0, None]) == timescales.Estimate(5.0)
  assert timescales.mean_interval([None, float("nan")]) is None
  g = timescales.geometric_mean([100.0, 400.0])
  assert g.value == pytest.approx(200.0)
  assert g.lo == pytest.approx(200.0 * math.exp(-t975_1 * math.log(2)))


def test_curve_stats_over_seeds():
  curves = [([0, 100, 200], [1.0, 2.0, 3.0]), ([0, 100, 200, 400], [3.0, 4.0, None, 7.0])]
  st = timescales.curve_stats(curves)
  np.testing.assert_array_equal(st.times, [0, 100, 200, 400])
  np.testing.assert_allclose(st.mean, [2.0, 3.0, 3.0, 7.0])
  np.testing.assert_array_equal(st.count, [2, 2, 1, 1])
  np.testing.assert_array_equal(st.min, [1.0, 2.0, 3.0, 7.0])
  np.testing.assert_array_equal(st.max, [3.0, 4.0, 3.0, 7.0])
  assert st.lo[0] == pytest.approx(2.0 - 12.706204736174707)
  assert np.isnan(st.lo[2]) and np.isnan(st.hi[3])


def test_onset_stats_with_censoring():
  obs = [timescales.Onset(timescales.OBSERVED, value=v) for v in (100.0, 400.0)]
  right = timescales.Onset(timescales.RIGHT_CENSORED, bound=5000.0)
  st = timescales.onset_stats(obs)
  assert st.status == timescales.OBSERVED and st.estimate.value == pytest.approx(200.0)
  mixed = timescales.onset_stats(obs + [right])
  assert mixed.status == "partially_censored" and mixed.num_right_censored == 1
  assert mixed.estimate.value == pytest.approx(200.0)
  allc = timescales.onset_stats([right, timescales.Onset(timescales.RIGHT_CENSORED, bound=4000.0)])
  assert allc.status == timescales.RIGHT_CENSORED and allc.bound == 4000.0 and allc.estimate is None


# ------------------------------------------------------------------ fits


def test_power_law_fit_exact():
  n = np.array([8, 16, 32, 64, 128] * 2, float)
  tau = 300.0 * n ** 1.0 * np.repeat([1.0, 1.1], 5)  # two seeds, a constant seed factor
  fit = timescales.fit_power_law(n, tau)
  assert fit.alpha.value == pytest.approx(1.0, abs=1e-10)
  assert fit.prefactor.value == pytest.approx(300.0 * math.sqrt(1.1), rel=1e-10)
  assert fit.alpha.lo < 1.0 < fit.alpha.hi and fit.num_points == 10
  exact = timescales.fit_power_law([10, 100, 1000], [5.0 * x ** 0.5 for x in (10, 100, 1000)])
  assert exact.alpha.value == pytest.approx(0.5, abs=1e-12)
  assert exact.prefactor.value == pytest.approx(5.0, rel=1e-12)
  assert exact.alpha.hi - exact.alpha.lo < 1e-6
  np.testing.assert_allclose(exact.predict([10, 1000]), [5 * 10 ** 0.5, 5 * 1000 ** 0.5])
  # Two points: a fit without intervals; one distinct n: no fit.
  two = timescales.fit_power_law([8, 16], [80, 160])
  assert two.alpha.value == pytest.approx(1.0) and two.alpha.lo is None
  assert timescales.fit_power_law([8, 8, 8], [1, 2, 3]) is None
  assert timescales.fit_power_law([], []) is None


def test_power_law_fit_interval_covers_under_noise():
  rng = np.random.default_rng(0)
  n = np.repeat([8.0, 16, 32, 64, 128], 2)
  covered_a = covered_c = 0
  trials = 400
  for _ in range(trials):
    tau = 300.0 * n ** 1.1 * np.exp(rng.normal(0, 0.3, n.size))
    fit = timescales.fit_power_law(n, tau)
    covered_a += fit.alpha.lo <= 1.1 <= fit.alpha.hi
    covered_c += fit.prefactor.lo <= 300.0 <= fit.prefactor.hi
  # 95% intervals: coverage 0.95 +- 3 binomial std (0.011).
  assert 0.915 <= covered_a / trials <= 0.985
  assert 0.915 <= covered_c / trials <= 0.985


def test_width_scaling_exact():
  widths, ns, gens, mems = [], [], [], []
  for w in (16, 32, 64):
    for n in (8, 16, 32, 64):
      widths.append(w)
      ns.append(n)
      gens.append(timescales.Onset(timescales.OBSERVED, value=3e6 / w))
      mems.append(timescales.Onset(timescales.OBSERVED, value=9600.0 * n / w))
  ws = timescales.width_scaling(widths, ns, gens, mems)
  assert ws.widths == (16, 32, 64)
  for w in ws.widths:
    assert ws.w_tau_gen[w].value == pytest.approx(3e6)
    assert ws.tau_mem_w_over_n[w].value == pytest.approx(9600.0)
  assert ws.w_tau_gen_spread == pytest.approx(1.0)
  assert ws.tau_gen_fit.exponent("width").value == pytest.approx(-1.0)
  assert ws.tau_mem_fit.exponent("n").value == pytest.approx(1.0)
  assert ws.tau_mem_fit.exponent("width").value == pytest.approx(-1.0)
  assert ws.tau_mem_fit.prefactor.value == pytest.approx(9600.0)
  # A single width cannot determine a width exponent.
  one = timescales.width_scaling([32] * 4, ns[:4], gens[:4], mems[:4])
  assert one.tau_gen_fit is None and one.tau_mem_fit is None and one.w_tau_gen_spread is None


# ------------------------------------------------------------------ phase diagram


def _records(width, table, times=(100, 200, 400, 800), num_params=None):
  """table: {n: [f_mem per time] or several lists (seeds)}."""
  out = []
  for n, rows in table.items():
    rows = rows if isinstance(rows[0], list) else [rows]
    for f in rows:
      out.append(dict(width=width, n=n, times=list(times), f_mem=f, num_params=num_params))
  return out


def test_f_mem_at_uses_the_evaluation_at_or_before():
  assert timescales.f_mem_at([100, 200, 400], [0.0, 0.1, 0.2], 399) == 0.1
  assert timescales.f_mem_at([100, 200, 400], [0.0, 0.1, 0.2], 400) == 0.2
  assert timescales.f_mem_at([100, 200, 400], [0.0, 0.1, 0.2], 99) is None
  assert timescales.f_mem_at([100, 200, 400], [0.0, 0.1, 0.2], 401) is None


def test_phase_diagram_on_constructed_tables():
  recs = _records(8, {
      8: [0.0, 0.1, 0.3, 0.5],
      16: [0.0, 0.0, 0.1, 0.3],
      32: [[0.0, 0.0, 0.0, 0.1], [0.0, 0.0, 0.0, 0.0]],  # one seed memorizes at 800
      64: [0.0, 0.0, 0.0, 0.0],
  }, num_params=1000)
  recs += _records(16, {
      8: [0.0, 0.0, 0.0, 0.2],
      16: [0.0, 0.0, 0.0, 0.0],  # a stray zero below a memorizing n
      32: [0.0, 0.0, 0.0, 0.05],
      64: [0.0, 0.0, 0.0, 0.0],
  }, num_params=4000)
  recs += _records(32, {8: [0.0, 0.5, 0.5, 0.5], 16: [0.0, 0.5, 0.5, 0.5]}, num_params=16000)
  out = timescales.phase_diagram(recs, {8: 100.0, 16: 100.0, 32: 50.0, 64: None},
                         multipliers=(1, 3, 8))
  got = {(b.width, b.multiplier): (b.n, b.status) for b in out}
  assert got[(8, 1.0)] == (8, "at_or_below")     # tau = 100: nothing memorized yet
  assert got[(8, 3.0)] == (16, timescales.OBSERVED)      # tau = 300 -> evaluation at 200
  assert got[(8, 8.0)] == (64, timescales.OBSERVED)      # tau = 800: n = 32 (one seed) memorizes
  assert got[(16, 8.0)] == (64, timescales.OBSERVED)     # not 16, despite its zero
  assert got[(16, 3.0)] == (8, "at_or_below")
  assert got[(32, 1.0)] == (None, "before_first_evaluation")  # tau = 50
  assert got[(32, 3.0)] == (8, "at_or_below")     # tau = 150 -> evaluation at 100
  assert got[(32, 8.0)] == (None, "above_grid")   # tau = 400: even n = 16 memorizes
  assert timescales.phase_diagram(recs, {8: 1000.0}, multipliers=(1,))[0].status == "beyond_budget"
  assert [b.num_params for b in out if b.width == 8] == [1000] * 3
  assert next(b for b in out if (b.width, b.multiplier) == (8, 8.0)).memorizing_n == (8, 16, 32)


def test_phase_diagram_thresholds_and_lower_bound():
  recs = [dict(width=8, n=8, times=[100, 200], f_mem=[0.0, 0.004], f_mem_lo=[0.0, 0.002]),
          dict(width=8, n=16, times=[100, 200], f_mem=[0.0, 0.02], f_mem_lo=[0.0, 0.0]),
          dict(width=8, n=32, times=[100, 200], f_mem=[0.0, 0.0], f_mem_lo=[0.0, 0.0])]
  strict = timescales.phase_diagram(recs, {8: 200.0}, multipliers=(1,))
  assert (strict[0].n, strict[0].status) == (32, timescales.OBSERVED)
  # The tau_mem criterion: 0.4% is below 1% and 2% has a zero lower bound.
  noisy = timescales.phase_diagram(recs, {8: 200.0}, multipliers=(1,), threshold=0.01, use_lo=True)
  assert (noisy[0].n, noisy[0].status) == (8, "at_or_below")
  no_tg = timescales.phase_diagram(recs, {8: None}, multipliers=(1,))
  assert no_tg[0].status == "no_tau_gen" and no_tg[0].tau is None


# ------------------------------------------------------------------ the random-features study's


def test_rise_onset_after_the_minimum():
  # test loss falls to its minimum at tau = 400, then L_gen rises log-linearly from 0.1 there
  # by 0.05 per doubling: a rise of 0.1 is reached at tau = 1600, exactly between evaluations
  # when the grid is coarse.
  taus = np.array([0.0, 100, 200, 400, 800, 1600, 3200, 6400])
  test = np.array([3.0, 2.0, 1.5, 1.0, 1.2, 1.4, 1.6, 1.8])
  gen = np.where(taus <= 400, 0.1, 0.1 + 0.05 * np.log2(np.maximum(taus, 1) / 400))
  o = timescales.rise_onset(taus, test, gen, rise=0.1)
  assert o.observed and o.value == pytest.approx(1600.0, rel=1e-9)
  coarse = [0, 1, 2, 3, 4, 6, 7]  # no evaluation at 1600: log-time interpolation finds it
  o = timescales.rise_onset(taus[coarse], test[coarse], gen[coarse], rise=0.1)
  assert o.value == pytest.approx(1600.0, rel=1e-9) and (o.lo, o.hi) == (800.0, 3200.0)
  o = timescales.rise_onset(taus, test, gen, rise=1.0)
  assert o.status == timescales.RIGHT_CENSORED and o.bound == 6400.0
  # A rise before the minimum does not count.
  assert timescales.rise_onset(taus, test, np.where(taus < 400, 5.0, gen), rise=0.1).value == (
      pytest.approx(1600.0))


def test_weighted_power_law_fit_and_stderr():
  rng = np.random.default_rng(0)
  x = np.array([1.0, 2, 4, 8, 16, 32])
  err = np.array([0.01, 0.01, 0.01, 0.01, 0.5, 0.5])  # relative errors of y
  y = 0.2 * x ** -0.55 * np.exp(err * rng.standard_normal(x.size))
  y[-1] *= 3.0  # an outlier with a large error barely moves the weighted fit
  fit = timescales.fit_power_law(x, y, y_err=err * y, name="psi_n")
  plain = timescales.fit_power_law(x, y, name="psi_n")
  assert abs(fit.alpha.value + 0.55) < 0.02 < abs(plain.alpha.value + 0.55)
  # The standard error is the half-width of the t-interval over its quantile.
  (se,) = fit.stderrs
  half = (fit.alpha.hi - fit.alpha.lo) / 2
  assert half == pytest.approx(timescales.t_quantile(0.95, x.size - 2) * se, rel=1e-9)
  # Closed form of weighted least squares on logs.
  w = 1 / err ** 2
  X = np.stack([np.ones_like(x), np.log(x)], 1)
  beta = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * np.log(y)))
  assert fit.alpha.value == pytest.approx(beta[1], rel=1e-9)
  assert fit.prefactor.value == pytest.approx(math.exp(beta[0]), rel=1e-9)
  # Two points: no scatter to estimate, no standard error.
  assert timescales.fit_power_law([1.0, 2.0], [1.0, 2.0]).stderrs == (None,)


def test_power_laws_share_one_definition():
  from jaxdiff.findings import fits
  assert issubclass(timescales.PowerLawFit, timescales.PowerLaw)
  assert issubclass(fits.CensoredFit, timescales.PowerLaw)
  fit = timescales.fit_power_law_multi({"n": [1.0, 2, 4, 8], "width": [1.0, 2, 1, 2]},
                                       [3.0, 3.0 * 2 * 2 ** -1, 3.0 * 4, 3.0 * 8 * 2 ** -1])
  assert fit.exponent("n").value == pytest.approx(1.0) and fit.exponent("width").value == (
      pytest.approx(-1.0))
  assert fit.predict([16.0], [2.0])[0] == pytest.approx(3.0 * 16 / 2)


def test_spread():
  assert timescales.spread([2.0, 8.0, 4.0]) == 4.0
  assert timescales.spread([3.0]) is None and timescales.spread([]) is None
