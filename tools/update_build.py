"""Rewrites BUILD from the Python imports: `python tools/update_build.py` (--check: exit 1
and print the difference when BUILD is out of date, write nothing).

One py_library per module of jaxdiff/ and configs/ (deps: the project modules it imports),
a py_binary per command, a py_test per tests/*_test.py. Third-party imports are noted as
"# pip:" comments with their PyPI names. tests/build_test.py checks the result against the
code independently of this script.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Commands: (binary name, source file, library it runs or None for a standalone script).
BINARIES = (
    ("main", "jaxdiff/main.py", "jaxdiff.main"),
    ("report", "jaxdiff/report.py", "jaxdiff.report"),
    ("plan", "jaxdiff/plan.py", "jaxdiff.plan"),
    ("audit", "jaxdiff/audit.py", "jaxdiff.audit"),
    ("advise", "jaxdiff/advise.py", "jaxdiff.advise"),
    ("sweep", "launch/sweep.py", None),
)

# Import name -> PyPI name, where they differ.
PIP_NAMES = {
    "absl": "absl-py", "ml_collections": "ml-collections", "orbax": "orbax-checkpoint",
    "sklearn": "scikit-learn", "pytorch_fid": "pytorch-fid", "PIL": "pillow",
    "tensorflow_datasets": "tensorflow-datasets",
}

HEADER = """\
# Bazel build graph of jaxdiff, mirroring the Python imports (tests/build_test.py keeps it
# true; tools/update_build.py rewrites it). Third-party requirements are noted as "# pip:"
# comments; nobody runs Bazel in CI.

load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")

package(default_visibility = ["//visibility:public"])"""


def module_name(path: str) -> str:
  return os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")


def python_files(folder: str):
  for base, dirs, files in os.walk(os.path.join(ROOT, folder)):
    dirs.sort()
    for f in sorted(files):
      if f.endswith(".py"):
        yield os.path.join(base, f)


def imports_of(path: str, modules: set[str]) -> tuple[set[str], set[str]]:
  """(project modules, third-party top-level packages) that a file imports."""
  tree = ast.parse(open(path).read())
  found, external = set(), set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = module_name(path).split(".")
        if not path.endswith("__init__.py"):
          package = package[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
      elif base:
        top = base.split(".")[0]
        if top not in ("jaxdiff", "configs", "__future__"):
          external.add(top)
      names = [base] + [f"{base}.{a.name}" for a in node.names]
    if isinstance(node, ast.Import):
      for name in names:
        top = name.split(".")[0]
        if top not in ("jaxdiff", "configs"):
          external.add(top)
    for name in names:
      if name in modules:
        found.add(name)
  found.discard(module_name(path))
  found = {m for m in found if not any(o.startswith(m + ".") for o in found)}
  external = {e for e in external if e not in sys.stdlib_module_names and e not in modules
              and e != "conftest"}
  return found, external


def label(module: str) -> str:
  return "//:" + module.replace(".", "_")


def rule(kind: str, name: str, srcs: list[str], deps: list[str], pip: set[str] | None,
         main: str | None = None) -> str:
  lines = [f"{kind}(", f'    name = "{name}",',
           "    srcs = [" + ", ".join(f'"{s}"' for s in srcs) + "],"]
  if main:
    lines.append(f'    main = "{main}",')
  if deps:
    if kind == "py_binary":
      lines.append("    deps = [" + ", ".join(f'"{d}"' for d in deps) + "],")
    else:
      lines += ["    deps = ["] + [f'        "{d}",' for d in deps] + ["    ],"]
  if pip is not None:
    names = sorted(PIP_NAMES.get(p, p) for p in pip)
    lines.append("    # pip: " + (", ".join(names) if names else "-"))
  lines.append(")")
  return "\n".join(lines)


def generate() -> str:
  modules = {module_name(p): p for folder in ("jaxdiff", "configs")
             for p in python_files(folder)}
  blocks = [HEADER]
  for module in sorted(modules):
    path = modules[module]
    deps, pip = imports_of(path, set(modules))
    blocks.append(rule("py_library", module.replace(".", "_"),
                       [os.path.relpath(path, ROOT)], sorted(label(d) for d in deps), pip))
  for name, src, library in BINARIES:
    if library is None:
      deps, pip = imports_of(os.path.join(ROOT, src), set(modules))
      blocks.append(rule("py_binary", name, [src], sorted(label(d) for d in deps), pip,
                         main=src))
    else:
      blocks.append(rule("py_binary", name, [src], [label(library)], None, main=src))
  for path in python_files("tests"):
    if not path.endswith("_test.py"):
      continue
    rel = os.path.relpath(path, ROOT)
    deps, pip = imports_of(path, set(modules))
    blocks.append(rule("py_test", os.path.basename(path)[:-3], [rel, "tests/conftest.py"],
                       sorted(label(d) for d in deps), pip, main=rel))
  return "\n\n".join(blocks) + "\n"


def main(argv: list[str]) -> int:
  text = generate()
  path = os.path.join(ROOT, "BUILD")
  current = open(path).read() if os.path.exists(path) else ""
  if "--check" in argv[1:]:
    if current == text:
      return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True),
                                               text.splitlines(True), "BUILD", "generated"))
    print("BUILD is out of date: run python tools/update_build.py", file=sys.stderr)
    return 1
  if current != text:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
    print("BUILD rewritten")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
