"""jaxdiff's command line: the only module (with jaxdiff.report) that defines flags.

  python -m jaxdiff.main --config=configs/digits.py --workdir=/tmp/digits
  python -m jaxdiff.main --config=configs/celeba.py --workdir=DIR --config.data.n_train=1024,2048
  python -m jaxdiff.main --config=configs/gmm.py:cpu --workdir=DIR
  python -m jaxdiff.main --config=configs/random_features.py --workdir=DIR

Rerunning a command on the same workdir resumes it. The experiment is chosen by
`config.experiment`: "diffusion" (the sweep trainer, jaxdiff.train) or "random_features"
(the theory study, jaxdiff.theory.study). A user mistake (a config value, a missing
dataset, a foreign workdir) ends with one line naming the key or file and exit code 2.
"""

from __future__ import annotations

import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jaxdiff import sharding
from jaxdiff.errors import JaxdiffError

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path of a config file (configs/*.py[:arg]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory; rerun to resume.")

EXPERIMENTS = ("diffusion", "random_features")


def _fail(message: str) -> None:
  print(f"jaxdiff: error: {message}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv):
  """absl's parser, with config-override mistakes turned into one line."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(_one_line(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections raises these for unknown keys or badly typed overrides.
    _fail(f"bad --config override: {_one_line(e)}")


def _one_line(error: Exception) -> str:
  """An exception's message (and its cause's) folded into one line, tracebacks cut."""
  parts = [str(error)]
  if error.__cause__ is not None:
    parts.append(str(error.__cause__))
  lines = []
  for part in parts:
    part = part.replace("\\n", "\n")
    if "Traceback (most recent call last)" in part:
      # ml_collections embeds the config file's traceback: keep its first and last lines.
      body = [l.strip() for l in part.splitlines() if l.strip()]
      part = body[0] + " " + body[-1]
    lines.append(part)
  text = " ".join(" ".join(lines).split())
  return re.sub(r"\\?'(\w+)\\?'", r"\1", text).strip("'\" ")


def run(config, workdir: str):
  """Dispatches on config.experiment."""
  experiment = config.get("experiment", "diffusion")
  if experiment == "diffusion":
    from jaxdiff import train
    return train.train_and_evaluate(config, workdir)
  if experiment == "random_features":
    from jaxdiff.theory import study
    return study.run_study(config, workdir)
  from jaxdiff.errors import ConfigError
  raise ConfigError("experiment", experiment, f"one of {EXPERIMENTS}")


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --config=... --workdir=... and "
          "--config.KEY=VALUE overrides")
  try:
    config = _CONFIG.value
    if config is not None:
      config.get("experiment")  # a config file that failed to load raises here
  except OSError as e:  # the config file could not be loaded
    _fail(f"--config: {_one_line(e)}")
  if config is None:
    _fail("--config is required, e.g. --config=configs/digits.py")
  if not _WORKDIR.value:
    _fail("--workdir is required, e.g. --workdir=/tmp/jaxdiff_digits")
  if not FLAGS["verbosity"].present:  # keep library INFO logs (orbax, XLA) out of the way
    logging.set_verbosity(logging.WARNING)
  try:  # several hosts: join them before any other JAX call (nothing on one host)
    sharding.maybe_initialize_distributed()
  except JaxdiffError as e:
    _fail(str(e))
  if jax.process_index() == 0:
    print(f"jaxdiff: JAX {jax.__version__}, process {jax.process_index() + 1}/"
          f"{jax.process_count()}, {jax.device_count()} {jax.default_backend()} device(s)",
          file=sys.stderr)
  try:
    result = run(config, _WORKDIR.value)
  except JaxdiffError as e:
    _fail(str(e))
  if result:
    print(f"jaxdiff: report written to {result}")


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main, flags_parser=_parse_flags)
