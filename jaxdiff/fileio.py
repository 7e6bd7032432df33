"""Crash-safe file writing: atomic replaces and append-only JSON-lines.

A finished result is never lost or half-written: whole files are written to a temporary
name in the same directory, fsynced and renamed over the target (atomic on POSIX);
`metrics.jsonl` is only appended to, every byte of a batch of rows written (a short write
is continued, a full disk raises `DiskFullError`), then fsynced. A row cut short by a crash
(no trailing newline) is dropped by `read_jsonl`; `scan_jsonl` finds every damaged line
and `set_aside_lines` moves such lines to a file beside the original (never deleted).
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from typing import Any, Iterable

from jaxdiff.errors import JaxdiffError


class DiskFullError(JaxdiffError):
  """The disk (or quota) is full: nothing is lost, rerun the command once there is space."""


def disk_full_error(path: str, what: str) -> DiskFullError:
  return DiskFullError(
      f"no space left on the device of {path} while writing {what}; everything written "
      "before is intact: free some space and rerun the same command to resume")


def is_disk_full(error: BaseException) -> bool:
  """Whether an exception (or one it was raised from) is a full disk or quota."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
  """Writes every byte of `data` (os.write may write fewer than asked: continue)."""
  view = memoryview(data)
  done = 0
  while done < len(view):
    if offset is None:
      n = os.write(fd, view[done:])
    else:
      n = os.pwrite(fd, view[done:], offset + done)
    if n <= 0:  # no progress and no error: treat as a full device rather than spin
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    done += n


def _json_default(obj):
  # numpy / jax scalars and arrays.
  if hasattr(obj, "tolist"):
    return obj.tolist()
  raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(value):
  """NaN/inf are not JSON: write them as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  return value


def dumps(obj: Any, **kwargs) -> str:
  """json.dumps that accepts numpy values and writes non-finite floats as null."""
  return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default))), **kwargs)


def flatten_dict(d, prefix: str = "") -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}: dotted keys of a nested (config) mapping."""
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      out.update(flatten_dict(v, key + "."))
    else:
      out[key] = v
  return out


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` so that readers see either the old or the new file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
  try:
    # mkstemp creates 0600 files; results are meant to be shared like any output file.
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if is_disk_full(e):
      raise disk_full_error(path, os.path.basename(path)) from None
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def _trim_partial_line(path: str) -> None:
  """Cuts a trailing row left without its newline by a crash."""
  if not os.path.exists(path):
    return
  with open(path, "rb+") as f:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
      return
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return
    # Walk back to the last newline.
    pos = size - 1
    chunk = 4096
    while pos > 0:
      start = max(0, pos - chunk)
      f.seek(start)
      buf = f.read(pos - start)
      idx = buf.rfind(b"\n")
      if idx >= 0:
        f.truncate(start + idx + 1)
        return
      pos = start
    f.truncate(0)


def append_jsonl(path: str, rows: Iterable[dict]) -> None:
  """Appends rows (one JSON object per line): every byte written, then fsynced.

  Raises:
    DiskFullError: the device is full; the bytes written so far end without a newline,
      so they are one damaged last line that `read_jsonl` skips and the next append trims.
  """
  text = "".join(dumps(r, sort_keys=True) + "\n" for r in rows)
  if not text:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    _trim_partial_line(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      write_all(fd, text.encode("utf-8"))
      os.fsync(fd)
    finally:
      os.close(fd)
  except OSError as e:
    if is_disk_full(e):
      raise disk_full_error(path, "metrics rows") from None
    raise


def read_jsonl(path: str) -> list[dict]:
  """Reads the complete rows of a JSON-lines file ([] if it does not exist)."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, "rb") as f:
    data = f.read()
  for line in data.split(b"\n"):
    line = line.strip()
    if not line:
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      continue  # a row cut short by a crash
  return rows


def scan_jsonl(path: str, valid=lambda row: isinstance(row, dict)
               ) -> tuple[list[tuple[int, dict]], list[tuple[int, bytes]]]:
  """The rows of a JSON-lines file and its damaged lines.

  A line is damaged when it does not parse, fails `valid`, or is the last line and has no
  newline (a write cut short). Blank lines are neither.

  Returns:
    (rows, damaged): (1-based line number, row) of the good rows in file order and
    (line number, raw bytes) of every damaged line.
  """
  if not os.path.exists(path):
    return [], []
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  rows, damaged = [], []
  for i, raw in enumerate(lines):
    last = i == len(lines) - 1
    if not raw.strip():
      continue
    try:
      row = json.loads(raw)
      ok = (not last) and valid(row)
    except (json.JSONDecodeError, UnicodeDecodeError):
      ok = False
    if ok:
      rows.append((i + 1, row))
    else:
      damaged.append((i + 1, raw))
  return rows, damaged


def set_aside_lines(path: str, line_numbers: Iterable[int], aside_path: str) -> None:
  """Moves lines of `path` (1-based numbers) to the end of `aside_path`, atomically.

  The lines are appended to `aside_path` first, then `path` is replaced by its other
  lines, so a crash between the two leaves a line in both files, never in neither.
  """
  drop = set(line_numbers)
  if not drop:
    return
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  keep, moved = [], []
  for i, raw in enumerate(lines):
    (moved if i + 1 in drop else keep).append(raw)
  aside = b"".join(m.rstrip(b"\n") + b"\n" for m in moved)
  fd = os.open(aside_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    write_all(fd, aside)
    os.fsync(fd)
  except OSError as e:
    if is_disk_full(e):
      raise disk_full_error(aside_path, "damaged metrics lines") from None
    raise
  finally:
    os.close(fd)
  body = b"".join(k + b"\n" for k in keep if k.strip())
  atomic_write_bytes(path, body)
