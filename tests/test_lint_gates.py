"""The suppression check that `make lint` runs (scripts/check_suppressions.py): a noqa or a type: ignore
needs its codes and a reason on the same line; the repository itself passes."""
import doctest
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_suppressions.py"


def _module():
    spec = importlib.util.spec_from_file_location("check_suppressions", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_doctests():
    assert doctest.testmod(_module()).failed == 0


# spelled in two parts, so that this file's own lines are not suppressions the check reads
NOQA, IGNORE = "# no" + "qa", "# type: " + "ignore"


def test_forms():
    problem = _module().problem
    assert problem(f"except Exception:  {NOQA}: BLE001 - the worker must outlive it") is None
    assert problem(f"import x  {NOQA}: F401  (re-exported)") is None
    assert problem(f"y = f()  {IGNORE}[arg-type]  # kafka-python takes None") is None
    assert problem(f"except Exception:  {NOQA}: BLE001") == "noqa without a reason after its codes"
    assert problem(f"import x  {NOQA}") == "noqa without codes"
    assert problem(f"y = f()  {IGNORE}") == "type: ignore without [codes]"
    assert problem(f"y = f()  {IGNORE}[arg-type]") == "type: ignore without a reason after its codes"


def test_the_repository_passes():
    out = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
