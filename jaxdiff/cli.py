"""What every command line of jaxdiff shares: one-line errors, the flag parser, --config.

  fail(message, code=2)   `jaxdiff: error: MESSAGE` on stderr and exit `code` (the end of
                          every command - main, plan, audit, advise, launch/sweep.py - on a
                          user mistake)
  one_line(error)         an exception (and its cause) folded into one line
  parse_flags(argv)       absl's parser with config-file and override mistakes turned into
                          one `fail` line; --help prints `usage()`
  config_flag()           the --config flag (a config file, `path[:variant]`), defined once
  sweep_flags()           the flags of a sweep command: --config, --workdir,
                          --rewrite_report (jaxdiff.main; jaxdiff.plan accepts the same)

Nothing here defines a flag at import: a module that imports jaxdiff.cli for `fail` (audit)
may define its own --workdir.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import textwrap
import traceback
from typing import NoReturn

from absl import flags

FLAGS = flags.FLAGS

EXIT_USER = 2  # a user mistake or an unusable workdir (README "Outputs")


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
  """Prints `jaxdiff: error: MESSAGE` (one line) to stderr and exits with `code`."""
  print(f"jaxdiff: error: {message}", file=sys.stderr)
  sys.exit(code)


def say(message: str) -> None:
  """A progress line on stderr ("jaxdiff: ...") that does not break a tqdm progress bar."""
  from tqdm.auto import tqdm
  tqdm.write(f"jaxdiff: {message}", file=sys.stderr)


def one_line(error: BaseException) -> str:
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


# ------------------------------------------------------------------------------- flags

_CONFIG_HOLDER: list = []  # the --config FlagHolder, once defined


def config_flag():
  """The --config flag holder (`config_flags.DEFINE_config_file`, locked), defined on the
  first call; later calls return the same holder."""
  if not _CONFIG_HOLDER:
    from ml_collections import config_flags
    _CONFIG_HOLDER.append(config_flags.DEFINE_config_file(
        "config", None, "Path of a config file (configs/*.py[:arg]).", lock_config=True))
  return _CONFIG_HOLDER[0]


@dataclasses.dataclass(frozen=True)
class SweepFlags:
  """The flag holders of a sweep command (`.value` is the parsed value)."""
  config: flags.FlagHolder
  workdir: flags.FlagHolder
  rewrite_report: flags.FlagHolder


_SWEEP_FLAGS: list[SweepFlags] = []


def sweep_flags() -> SweepFlags:
  """--config, --workdir and --rewrite_report, defined on the first call."""
  if not _SWEEP_FLAGS:
    _SWEEP_FLAGS.append(SweepFlags(
        config=config_flag(),
        workdir=flags.DEFINE_string("workdir", None, "Output directory; rerun to resume."),
        rewrite_report=flags.DEFINE_bool(
            "rewrite_report", False, "On a finished workdir, write its report again (a "
            "rerun without it only prints the summary).")))
  return _SWEEP_FLAGS[0]


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
  listed = textwrap.fill(", ".join(names) or "see configs/", width=88,
                         initial_indent=" " * 22, subsequent_indent=" " * 22)
  return HELP.format(configs=listed)


def config_path(argv) -> str | None:
  """The file of the --config argument in argv (without its :variant), or None."""
  for i, a in enumerate(argv):
    value = (a.split("=", 1)[1] if a.startswith(("--config=", "-config=")) else
             argv[i + 1] if a in ("--config", "-config") and i + 1 < len(argv) else None)
    if value is not None:
      return value.split(":", 1)[0]
  return None


def config_file_error(error: BaseException, path: str | None) -> str | None:
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


def _override_key(argv, token: str) -> tuple[str, str] | None:
  """The --config.KEY=... override whose KEY has `token` as one of its parts: (arg, KEY)."""
  for a in argv:
    if a.startswith("--config.") and "=" in a:
      key = a[len("--config."):].split("=", 1)[0]
      if token in key.split("."):
        return a, key
  return None


def bad_override(error: Exception, argv) -> str:
  """'bad --config override --config.train.num_step=4: no key train.num_step (did you mean
  train.num_steps?)' from ml_collections' message, which names only the last part."""
  text = one_line(error)
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


def parse_flags(argv):
  """absl's parser, with config-override mistakes turned into one line."""
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(usage())
    sys.exit(0)
  path = config_path(argv[1:])
  if path and not os.path.isfile(path):
    fail(f"--config={path}: no such file; expected a config file such as "
         "configs/digits.py (python -m jaxdiff.main --help lists them)")
  try:
    return FLAGS(argv)
  except flags.Error as e:
    located = config_file_error(e, config_path(argv[1:]))
    fail(f"--config: {located}" if located else one_line(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections raises these for unknown keys or badly typed overrides.
    located = config_file_error(e, config_path(argv[1:]))
    fail(f"--config: {located}" if located else bad_override(e, argv[1:]))
  except Exception as e:  # a config file that does not parse or raises something else
    located = config_file_error(e, config_path(argv[1:]))
    fail(f"--config: {located or one_line(e)}")


def loaded_config(holder, example: str = "configs/digits.py"):
  """The parsed config of a --config holder; a config file that failed to load, or none
  given, ends with one line."""
  try:
    config = holder.value
    if config is not None:
      config.get("experiment")  # a config file that failed to load raises here
  except OSError as e:  # the config file could not be loaded
    fail(f"--config: {one_line(e)}")
  if config is None:
    fail(f"--config is required, e.g. --config={example}")
  return config
