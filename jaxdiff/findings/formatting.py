"""Numbers, onsets and intervals as the report's text shows them (report.md, the figures'
legends, the terminal summary): one place, so that a number reads the same everywhere."""

from __future__ import annotations

import math

from jaxdiff.findings import timescales


def fmt(x: float | None, digits: int = 3) -> str:
  """A number for text: 3 significant digits, 1.2e5 style for large/small magnitudes."""
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "–"
  x = float(x)
  if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
    m, e = f"{x:.{digits - 1}e}".split("e")
    return f"{m}e{int(e)}"
  if abs(x) >= 10 ** (digits - 1):
    return f"{float(f'{x:.{digits}g}'):.0f}"
  return f"{x:.{digits}g}"


def fmt_onset(o: timescales.Onset, budget: float | None = None) -> str:
  """An onset with its interval; an open upper end shows as "> budget"."""
  if o.status == timescales.OBSERVED:
    hi = fmt(o.hi) if o.hi is not None else f"> {fmt(budget)}"
    return f"{fmt(o.value)} [{fmt(o.lo)}, {hi}]"
  if o.status == timescales.RIGHT_CENSORED:
    return f"> {fmt(o.bound)}"
  if o.status == timescales.LEFT_CENSORED:
    return f"≤ {fmt(o.bound)}"
  return "–"


def fmt_stats(s: timescales.OnsetStats) -> str:
  if s.status == timescales.RIGHT_CENSORED:
    return f"> {fmt(s.bound)}"
  if s.status == timescales.LEFT_CENSORED:
    return f"≤ {fmt(s.bound)}"
  if s.estimate is None:
    return "–"
  text = fmt(s.estimate.value)
  if s.estimate.lo is not None:
    text += f" [{fmt(s.estimate.lo)}, {fmt(s.estimate.hi)}]"
  censored = s.num_right_censored + s.num_left_censored
  if censored:
    text += f" ({censored} of {s.num_runs} censored)"
  return text


def fmt_est(e: timescales.Estimate | None, digits: int = 3) -> str:
  if e is None:
    return "–"
  if e.lo is None:
    return fmt(e.value, digits)
  return f"{fmt(e.value, digits)} [{fmt(e.lo, digits)}, {fmt(e.hi, digits)}]"


def fmt_slope(e: timescales.Estimate | None) -> str:
  """An exponent with its interval, 2 decimals."""
  if e is None:
    return "–"
  r = lambda v: f"{round(v, 2) + 0.0:.2f}"  # no "-0.00"
  return r(e.value) if e.lo is None else f"{r(e.value)} [{r(e.lo)}, {r(e.hi)}]"


def fmt_exponent(e: timescales.Estimate) -> str:
  """alpha ± half-width of the interval (asymmetric intervals: the larger half)."""
  r = lambda v: f"{round(v, 2) + 0.0:.2f}"  # no "-0.00"
  if e.lo is None:
    return r(e.value)
  return f"{r(e.value)} ± {r(max(e.hi - e.value, e.value - e.lo))}"


def table_head(*columns: str) -> list[str]:
  """The header line and the separator line of a markdown table (report.md of a sweep and
  of the random-features study)."""
  return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


SHORT_QUALITY = {"fid": "FID", "classifier_fd": "classifier-feature FD",
                 "pixel_fd": "pixel-space FD", "gmm_kl": "KL estimate"}


def short_quality(a) -> str:
  """A label short enough for an axis or a table column (the long one is in report.md)."""
  return SHORT_QUALITY.get(a.quality_name or "", a.quality_label or "quality")
