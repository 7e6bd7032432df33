"""Crash-safe file writing: atomic replaces and append-only JSON-lines.

A finished result is never lost or half-written: whole files are written to a temporary
name in the same directory, fsynced and renamed over the target (atomic on POSIX);
`metrics.jsonl` is only appended to, one `write` per batch of rows, fsynced. A row cut
short by a crash (no trailing newline) is dropped by `read_jsonl` and trimmed by the next
`append_jsonl`, so earlier rows are never touched.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Iterable


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
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
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
  """Appends rows (one JSON object per line) in a single write, then fsyncs."""
  text = "".join(dumps(r, sort_keys=True) + "\n" for r in rows)
  if not text:
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  _trim_partial_line(path)
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.write(fd, text.encode("utf-8"))
    os.fsync(fd)
  finally:
    os.close(fd)


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
