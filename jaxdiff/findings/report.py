"""The report of one or more sweep workdirs, in one call: `write_report(workdirs)`.

Reads the workdirs (workdirs.py), settles the thresholds (settings.py), analyses the runs
(analysis.py) and writes into the output directory (default: <first workdir>/report):
the figures (figures.py), summary.json and runs.csv (summary.py) and report.md
(markdown.py). The trainer calls it at the end of a sweep when config.report.auto is set;
`python -m jaxdiff.report` is its command line. Every file is written atomically.
"""

from __future__ import annotations

import os
from typing import Sequence

from jaxdiff import fileio
from jaxdiff.errors import WorkdirError
from jaxdiff.findings import markdown
from jaxdiff.findings import summary
from jaxdiff.findings.analysis import analyze
from jaxdiff.findings.settings import settings_from_config
from jaxdiff.findings.workdirs import load_workdir
from jaxdiff.findings.summary import summary_of_report  # noqa: F401  (what the commands print)


def write_report(workdirs: Sequence[str], out_dir: str | None = None,
                 config_overrides=None) -> str:
  """Writes figures, summary.json, runs.csv and report.md for one or more workdirs.

  Args:
    workdirs: sweep workdirs (one per width, for instance); the thresholds come from the
      first one's config.report.
    out_dir: output directory (default: <workdirs[0]>/report).
    config_overrides: report settings replacing config.report.* (see
      `settings_from_config`).

  Returns:
    The path of report.md.

  Raises:
    WorkdirError: a workdir or one of its files is missing or foreign.
    ConfigError: a report setting is out of range.
  """
  from jaxdiff.findings import figures  # matplotlib only when a report is written

  if isinstance(workdirs, str):
    workdirs = [workdirs]
  if not workdirs:
    raise WorkdirError("no workdir given: pass at least one --workdir")
  sweeps = [load_workdir(w) for w in workdirs]
  settings = settings_from_config(sweeps[0].config, config_overrides)
  analysis = analyze(sweeps, settings)
  for sw in sweeps[1:]:
    other = settings_from_config(sw.config, config_overrides)
    if other != settings:
      analysis.notes.append(f"{sw.path} has different report settings; those of "
                            f"{sweeps[0].path} are used.")
  out_dir = out_dir or os.path.join(workdirs[0], "report")
  os.makedirs(out_dir, exist_ok=True)
  written = figures.write_figures(analysis, out_dir)
  fileio.atomic_write_json(os.path.join(out_dir, "summary.json"), summary.summary_dict(analysis))
  fileio.atomic_write_text(os.path.join(out_dir, "runs.csv"), summary.runs_csv(analysis))
  path = os.path.join(out_dir, "report.md")
  fileio.atomic_write_text(path, markdown.markdown(analysis, written, out_dir))
  return path
