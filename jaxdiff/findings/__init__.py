"""What a finished sweep or study shows: its timescales, fits, figures and report.

Reads the files runs leave (config.json, runs.json, metrics.jsonl, the sample grids and
the random-features study's stages) and writes reports; computes nothing a run needs.

  workdirs        the files of a sweep workdir (WorkdirFiles, load_workdir)
  settings        the report's thresholds: configs/base.py's report section, config.report
  timescales      onsets on one curve (tau_gen, tau_mem, loss gap, the RF study's L_gen
                  rise), seed statistics, least-squares power laws, width scaling, phase
  fits            censoring-aware power-law fits of onsets, their intervals, the collapse
  analysis        the result types and analyze(): every run, group and series of a sweep
  formatting      numbers, onsets and intervals as text
  interpretation  the findings' sentences, the verdicts on the exponents, the definitions
  summary         summary.json, runs.csv, the terminal summary
  markdown        report.md
  figures         the sweep report's figures (and the save every figure shares)
  grids           sample / nearest-neighbour grids and the gap-ratio histogram
  protocol        the protocol section and its differences from the paper's
  report          write_report: the one entry (python -m jaxdiff.report is its CLI)
  rf_report       summary.json, report.md and figures of the random-features study
  rf_figures      the random-features study's figures
"""
