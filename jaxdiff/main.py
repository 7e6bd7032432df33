"""jaxdiff's command line: flags and dispatch (the shared pieces are jaxdiff.cli).

  python -m jaxdiff.main --config=configs/digits.py --workdir=/tmp/digits
  python -m jaxdiff.main --config=configs/celeba.py --workdir=DIR --config.data.n_train=1024,2048
  python -m jaxdiff.main --config=configs/gmm.py:cpu --workdir=DIR
  python -m jaxdiff.main --config=configs/random_features.py --workdir=DIR

Rerunning a command on the same workdir resumes it. The experiment is chosen by
`config.experiment`: "diffusion" (the sweep trainer, jaxdiff.train) or "random_features"
(the theory study, jaxdiff.rf_study). Every failure a user can cause or meet ends
with one `jaxdiff: error:` line naming the key or file. Exit codes:

  0   finished
  2   a user mistake or an unusable workdir: a config value, a config file that raises or
      does not parse (named with the exception's own line), a missing dataset, a foreign
      workdir or one in use by another process, a path that is a file or read-only, a
      full disk (nothing is lost: rerun once there is space), no readable checkpoint
  3   finished, but some runs diverged (frozen, marked `diverged` in runs.json and
      metrics.jsonl, listed in the report); also when every run diverged
  75  stopped by SIGTERM/SIGINT after checkpointing the current step: rerun the same
      command to resume (a scheduler should requeue the job)
  1   a bug (a Python traceback)
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
import jax

from jaxdiff import cli
from jaxdiff import distributed
from jaxdiff.errors import JaxdiffError

FLAGS = flags.FLAGS
SWEEP_FLAGS = cli.sweep_flags()  # --config, --workdir, --rewrite_report (jaxdiff.cli)

EXPERIMENTS = ("diffusion", "random_features")


EXIT_USER = cli.EXIT_USER
EXIT_DIVERGED = 3   # = train.EXIT_DIVERGED
EXIT_STOPPED = 75   # = train.EXIT_STOPPED


def run(config, workdir: str):
  """Dispatches on config.experiment."""
  experiment = config.get("experiment", "diffusion")
  if experiment == "diffusion":
    from jaxdiff import train
    return train.train_and_evaluate(config, workdir,
                                    rewrite_report=SWEEP_FLAGS.rewrite_report.value)
  if experiment == "random_features":
    from jaxdiff import rf_study
    return rf_study.run_study(config, workdir)
  from jaxdiff.errors import ConfigError
  raise ConfigError("experiment", experiment, f"one of {EXPERIMENTS}")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}; use --config=... --workdir=... and "
             "--config.KEY=VALUE overrides")
  config = cli.loaded_config(SWEEP_FLAGS.config)
  if not SWEEP_FLAGS.workdir.value:
    cli.fail("--workdir is required, e.g. --workdir=/tmp/jaxdiff_digits")
  if not FLAGS["verbosity"].present:  # keep library INFO logs (orbax, XLA) out of the way
    logging.set_verbosity(logging.WARNING)
  try:  # several hosts: join them before any other JAX call (nothing on one host)
    distributed.maybe_initialize_distributed()
  except JaxdiffError as e:
    cli.fail(str(e))
  if jax.process_index() == 0:
    print(f"jaxdiff: JAX {jax.__version__}, process {jax.process_index() + 1}/"
          f"{jax.process_count()}, {jax.device_count()} {jax.default_backend()} device(s)",
          file=sys.stderr)
  from jaxdiff import train
  try:
    result = run(config, SWEEP_FLAGS.workdir.value)
  except train.TrainingDiverged as e:
    if e.report:
      from jaxdiff.findings import report
      print("\n".join(report.summary_of_report(e.report)))
    cli.fail(str(e), EXIT_DIVERGED)
  except train.StoppedBySignal as e:
    print(f"jaxdiff: {e}", file=sys.stderr)
    sys.exit(EXIT_STOPPED)
  except JaxdiffError as e:
    cli.fail(str(e), getattr(e, "exit_code", EXIT_USER))
  except KeyboardInterrupt:  # a second signal: stopped without waiting for the dispatch
    cli.fail("stopped at once by a second signal; the last checkpoint is kept: rerun the "
             "same command to resume from it", EXIT_STOPPED)
  if result:  # the report's own numbers, from its summary.json
    from jaxdiff.findings import report
    print("\n".join(report.summary_of_report(result)))


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main, flags_parser=cli.parse_flags)
