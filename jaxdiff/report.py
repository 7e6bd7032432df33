"""The report of a diffusion sweep, from the command line (jaxdiff.findings writes it).

Reads `config.json`, `runs.json` and `metrics.jsonl` of one or more workdirs (several
workdirs, e.g. one per width, combine into one report), measures every run's timescales,
aggregates them over seeds and data indices, fits their scaling with n and W, and writes
into the output directory (default: <first workdir>/report):

  quality_fmem.png, fmem_collapse.png, losses.png, timescales.png, and with several
  widths width_scaling.png and phase_diagram.png (each with a PDF copy); summary.json;
  runs.csv (one row per run: its timescales with brackets and censoring, final f_mem and
  quality; `pandas.read_csv`); report.md (figures, tables, the definitions used and a
  reading of the numbers).

Usage:
  python -m jaxdiff.report --workdir=/tmp/digits
  python -m jaxdiff.report --workdir=/tmp/w16 --workdir=/tmp/w32 --out=/tmp/widths

or from Python: `jaxdiff.findings.report.write_report([workdir])` (the trainer calls it at
the end of a sweep when config.report.auto is set).
"""

from __future__ import annotations

import sys
from typing import Sequence

from jaxdiff.errors import JaxdiffError
from jaxdiff.findings.report import write_report


def _define_flags(flag_values) -> None:
  # Defined only when run as a program: importing jaxdiff.report must not register flags
  # (jaxdiff.main defines --workdir too).
  from absl import flags
  flags.DEFINE_multi_string("workdir", None, "Workdir of a sweep; repeat to combine several "
                            "(e.g. one per width).", flag_values=flag_values)
  flags.DEFINE_string("out", None, "Output directory (default: <first workdir>/report).",
                      flag_values=flag_values)


def main(argv: Sequence[str]) -> None:
  from absl import flags
  if len(argv) > 1:
    raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
  fv = flags.FLAGS
  try:
    path = write_report(fv.workdir, fv.out)
  except JaxdiffError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
  print(f"wrote {path}")


if __name__ == "__main__":
  from absl import app, flags as _flags
  _define_flags(_flags.FLAGS)
  _flags.mark_flag_as_required("workdir")
  app.run(main)
