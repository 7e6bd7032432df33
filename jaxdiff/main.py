"""jaxdiff's command line: the only module (with jaxdiff.report) that defines flags.

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

import os
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jaxdiff import sharding
from jaxdiff import errors
from jaxdiff.errors import JaxdiffError

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path of a config file (configs/*.py[:arg]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory; rerun to resume.")
_REWRITE_REPORT = flags.DEFINE_bool(
    "rewrite_report", False, "On a finished workdir, write its report again (a rerun "
    "without it only prints the summary).")

EXPERIMENTS = ("diffusion", "random_features")


EXIT_USER = 2
EXIT_DIVERGED = 3   # = train.EXIT_DIVERGED
EXIT_STOPPED = 75   # = train.EXIT_STOPPED


def _fail(message: str, code: int = EXIT_USER) -> None:
  errors.exit_with_error(message, code)


def _config_path(argv) -> str | None:
  for i, a in enumerate(argv):
    value = (a.split("=", 1)[1] if a.startswith(("--config=", "-config=")) else
             argv[i + 1] if a in ("--config", "-config") and i + 1 < len(argv) else None)
    if value is not None:
      return value.split(":", 1)[0]
  return None


def _config_file_error(error: BaseException, path: str | None) -> str | None:
  """'FILE, line N: Type: message' for an exception raised by (or parsing) a config file."""
  if not path:
    return None
  target = os.path.realpath(path)
  chain, e = [], error
  while e is not None and e not in chain:
    chain.append(e)
    e = e.__cause__ or e.__context__
  for e in reversed(chain):  # the innermost first: the config file's own exception
    if isinstance(e, SyntaxError) and e.filename and os.path.realpath(e.filename) == target:
      return f"{path}, line {e.lineno}: SyntaxError: {e.msg}"
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if os.path.realpath(f.filename) == target]
    if frames:
      f = frames[-1]
      return (f"{path}, line {f.lineno} ({(f.line or '').strip()}): "
              f"{type(e).__name__}: {e}")
  return None


HELP = """\
usage: python -m jaxdiff.main --config=CONFIG[:VARIANT] --workdir=DIR [--config.KEY=VALUE ...]

Trains and evaluates every run of a config (every n, seed, data block and learning rate
of a sweep) in one program, then writes the report: tau_gen, tau_mem, the fits, figures.
Rerunning the same command on the same DIR resumes it; a finished DIR says so.

  --config=CONFIG     a config file; each file's docstring gives its command, hardware
                      and expected result. Shipped:
{configs}
  --workdir=DIR       the output folder, the unit of resume
  --config.KEY=VALUE  override any key; every key, with a comment, is in configs/base.py.
                      Tuples are comma-separated, e.g.
                        --config.data.n_train=8,32,128 --config.data.seeds=0,1
                        --config.train.num_steps=400
  --rewrite_report    on a finished DIR, write its report again (e.g. new report.* keys)

Example (the embedded default, a few minutes on a CPU):
  python -m jaxdiff.main --config=configs/digits.py --workdir=/tmp/jaxdiff_digits

Other commands:
  python -m jaxdiff.report --workdir=DIR [--workdir=DIR2 ...]   rewrite / combine reports
  python -m jaxdiff.plan --config=CONFIG [--device_memory=80GB]  memory and time of a
                      sweep on this machine (or a rehearsed one) before booting anything
  python -m jaxdiff.audit --train=PATH --samples=PATH --workdir=DIR [--heldout=PATH]
                      memorization of any model's samples against its training images
  python -m jaxdiff.advise --config=CONFIG --workdir=DIR --n=N
                      when to stop training on N images, from small pilot sweeps
  (each takes --help)

Exit codes: 0 finished; 2 a user mistake (one "jaxdiff: error:" line names the key or
file); 3 finished, but some runs diverged; 75 stopped by a signal: rerun to resume;
1 a bug (a traceback).
"""

HELP_FLAGS = ("-h", "--h", "-help", "--help", "--helpshort", "--helpfull", "-?")


def usage() -> str:
  """The --help text, with the config files that ship beside the package."""
  here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
  names = sorted(f"configs/{n}" for n in os.listdir(here)
                 if n.endswith(".py") and n not in ("__init__.py", "base.py")) if (
                     os.path.isdir(here)) else []
  import textwrap
  listed = textwrap.fill(", ".join(names) or "see configs/", width=88,
                         initial_indent=" " * 22, subsequent_indent=" " * 22)
  return HELP.format(configs=listed)


def _override_key(argv, token: str) -> tuple[str, str] | None:
  """The --config.KEY=... override whose KEY has `token` as one of its parts: (arg, KEY)."""
  for a in argv:
    if a.startswith("--config.") and "=" in a:
      key = a[len("--config."):].split("=", 1)[0]
      if token in key.split("."):
        return a, key
  return None


def _bad_override(error: Exception, argv) -> str:
  """'bad --config override --config.train.num_step=4: no key train.num_step (did you mean
  train.num_steps?)' from ml_collections' message, which names only the last part."""
  text = _one_line(error)
  m = re.match(r'(\w+) Did you mean "(\w+)" instead of "\w+"\?', text)
  token = m.group(1) if m else text.split(" ")[0]
  found = _override_key(argv, token)
  if found is None:
    return f"bad --config override: {text}"
  arg, key = found
  parts = key.split(".")
  where = parts.index(token)
  hint = ""
  if m:
    parts[where] = m.group(2)
    hint = f" (did you mean {'.'.join(parts)}?)"
  return (f"bad --config override {arg.split('=', 1)[0]}: no key "
          f"{'.'.join(key.split('.')[:where + 1])}{hint}; every key is listed, with a "
          "comment, in configs/base.py")


def _parse_flags(argv):
  """absl's parser, with config-override mistakes turned into one line."""
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(usage())
    sys.exit(0)
  path = _config_path(argv[1:])
  if path and not os.path.isfile(path):
    _fail(f"--config={path}: no such file; expected a config file such as "
          "configs/digits.py (python -m jaxdiff.main --help lists them)")
  try:
    return FLAGS(argv)
  except flags.Error as e:
    located = _config_file_error(e, _config_path(argv[1:]))
    _fail(f"--config: {located}" if located else _one_line(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections raises these for unknown keys or badly typed overrides.
    located = _config_file_error(e, _config_path(argv[1:]))
    _fail(f"--config: {located}" if located else _bad_override(e, argv[1:]))
  except Exception as e:  # a config file that does not parse or raises something else
    located = _config_file_error(e, _config_path(argv[1:]))
    _fail(f"--config: {located or _one_line(e)}")


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
    return train.train_and_evaluate(config, workdir, rewrite_report=_REWRITE_REPORT.value)
  if experiment == "random_features":
    from jaxdiff import rf_study
    return rf_study.run_study(config, workdir)
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
  from jaxdiff import train
  try:
    result = run(config, _WORKDIR.value)
  except train.TrainingDiverged as e:
    if e.report:
      from jaxdiff.findings import report
      print("\n".join(report.summary_of_report(e.report)))
    _fail(str(e), EXIT_DIVERGED)
  except train.StoppedBySignal as e:
    print(f"jaxdiff: {e}", file=sys.stderr)
    sys.exit(EXIT_STOPPED)
  except JaxdiffError as e:
    _fail(str(e), getattr(e, "exit_code", EXIT_USER))
  except KeyboardInterrupt:  # a second signal: stopped without waiting for the dispatch
    _fail("stopped at once by a second signal; the last checkpoint is kept: rerun the "
          "same command to resume from it", EXIT_STOPPED)
  if result:  # the report's own numbers, from its summary.json
    from jaxdiff.findings import report
    print("\n".join(report.summary_of_report(result)))


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main, flags_parser=_parse_flags)
