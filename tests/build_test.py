"""BUILD mirrors the module graph: one py_library per module with its jaxdiff imports as
deps, a py_binary for each command, a py_test per test file. Bazel cannot fetch its rules
here, so this test reads BUILD (tools/update_build.py writes it) (Starlark is Python syntax) and checks it against the code.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_build():
  rules = []

  def rule(kind):
    def record(**kwargs):
      rules.append(dict(kwargs, kind=kind))
    return record

  namespace = {k: rule(k) for k in ("py_library", "py_binary", "py_test")}
  namespace["load"] = lambda *args, **kwargs: None
  namespace["package"] = lambda **kwargs: None
  with open(os.path.join(ROOT, "BUILD")) as f:
    exec(compile(f.read(), "BUILD", "exec"), namespace)  # pylint: disable=exec-used
  return rules


def module_name(path):
  return os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")


def python_files(folder):
  for base, _, files in os.walk(os.path.join(ROOT, folder)):
    for f in sorted(files):
      if f.endswith(".py"):
        yield os.path.join(base, f)


def internal_imports(path, modules):
  """The project modules a file imports (jaxdiff.* and configs.*)."""
  tree = ast.parse(open(path).read())
  found = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative import: resolve against this file's package
        package = module_name(path).split(".")
        if not path.endswith("__init__.py"):
          package = package[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
      names = [base] + [f"{base}.{a.name}" for a in node.names]
    for name in names:
      if name in modules:
        found.add(name)
  found.discard(module_name(path))
  # `from jaxdiff.metrics import quality` names the package and the module: the module is
  # the dependency.
  return {m for m in found if not any(o.startswith(m + ".") for o in found)}


def label(module):
  return "//:" + module.replace(".", "_")


def test_build_matches_modules():
  rules = load_build()
  by_name = {r["name"]: r for r in rules}
  modules = {module_name(p): p for folder in ("jaxdiff", "configs")
             for p in python_files(folder)}
  libraries = {r["name"] for r in rules if r["kind"] == "py_library"}
  expected = {m.replace(".", "_") for m in modules}
  assert libraries == expected, (sorted(expected - libraries), sorted(libraries - expected))
  for module, path in modules.items():
    rule = by_name[module.replace(".", "_")]
    assert rule["srcs"] == [os.path.relpath(path, ROOT)], module
    deps = {d for d in rule.get("deps", []) if d.startswith("//:")}
    want = {label(m) for m in internal_imports(path, modules)}
    assert deps == want, (module, sorted(want - deps), sorted(deps - want))


def test_build_has_binaries_and_tests():
  rules = load_build()
  binaries = {r["name"]: r for r in rules if r["kind"] == "py_binary"}
  assert binaries["main"]["srcs"] == ["jaxdiff/main.py"]
  assert binaries["report"]["srcs"] == ["jaxdiff/report.py"]
  assert binaries["plan"]["srcs"] == ["jaxdiff/plan.py"]
  assert binaries["audit"]["srcs"] == ["jaxdiff/audit.py"]
  assert binaries["advise"]["srcs"] == ["jaxdiff/advise.py"]
  assert binaries["sweep"]["srcs"] == ["launch/sweep.py"]
  tests = {r["srcs"][0] for r in rules if r["kind"] == "py_test"}
  on_disk = {os.path.relpath(p, ROOT) for p in python_files("tests")
             if p.endswith("_test.py")}
  assert tests == on_disk, (sorted(on_disk - tests), sorted(tests - on_disk))
