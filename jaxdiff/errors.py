"""User-facing errors: one clear line naming the key or file, the value and what is expected.

`jaxdiff.main` catches `JaxdiffError` and prints its message (no traceback) with exit code 2
(`jaxdiff.cli.fail`, the one-line exit of every command).
Programming errors are left as ordinary exceptions.
"""


class JaxdiffError(Exception):
  """Base class of the errors caused by user input (config, data, workdir)."""


class ConfigError(JaxdiffError, ValueError):
  """A config value is not allowed.

  Example message: `config key data.n_train = (8, 8): expected strictly increasing positive integers`.
  """

  def __init__(self, key: str, value, expected: str):
    self.key, self.value, self.expected = key, value, expected
    super().__init__(f"config key {key} = {value!r}: expected {expected}")


class DataError(JaxdiffError):
  """A dataset or file is missing, unprepared or malformed (the message says how to fix it)."""


class WorkdirError(JaxdiffError):
  """The workdir holds something that does not belong to this config (or is not a jaxdiff workdir)."""
