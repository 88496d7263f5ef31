"""Every `noqa` and `type: ignore` in the repository names its codes and says why, on the same line.

ruff (PGH004, RUF100) and mypy (ignore-without-code, warn_unused_ignores) already refuse a suppression
without codes or one that suppresses nothing; this adds the reason. Accepted forms:

    except Exception as exc:  # noqa: BLE001 - one model's broken state must not stop the others
    import sklearn.ensemble  # noqa: F401  (warmed up before the first job)
    x = f(y)  # type: ignore[arg-type]  # kafka-python's stub says int, it takes None too

Run by `make lint` over the files git tracks; prints each offending line and exits 1 if there is one.

>>> problem("x = 1  # noqa: F401 - re-exported")
>>> problem("x = 1  # noqa: F401")
'noqa without a reason after its codes'
>>> problem("x = 1  # noqa")
'noqa without codes'
>>> problem("y = f()  # type: ignore[arg-type]  # the stub is wrong")
>>> problem("y = f()  # type: ignore")
'type: ignore without [codes]'
>>> problem("y = f()  # type: ignore[arg-type]")
'type: ignore without a reason after its codes'
>>> problem('s = "# noqa inside a string is still checked, keep it out of strings"')
'noqa without codes'
"""

from __future__ import annotations

import re
import subprocess
import sys

_NOQA = re.compile(r"#\s*noqa\b(?P<codes>:\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?(?P<rest>.*)$", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<codes>\[[a-z0-9,\s-]+\])?(?P<rest>.*)$")
# a reason: a separator (-, –, :, ( or a second #) then at least one word
_REASON = re.compile(r"^\s*(?:[-–:(]|#)\s*\w")


def problem(line: str) -> str | None:
    """What is wrong with the suppressions on `line`, or None."""
    for name, pattern, bare in (("noqa", _NOQA, "noqa without codes"),
                                ("type: ignore", _IGNORE, "type: ignore without [codes]")):
        m = pattern.search(line)
        if m is None:
            continue
        if not m["codes"]:
            return bare
        if not _REASON.match(m["rest"]):
            return f"{name} without a reason after its codes"
    return None


def main() -> int:
    """Check every tracked Python file (and .ci/run, which embeds Python); 1 if any line fails."""
    files = subprocess.run(["git", "ls-files", "*.py", ".ci/run"], check=True, capture_output=True,
                           text=True).stdout.split()
    bad = seen = 0
    for path in files:
        if path == "scripts/check_suppressions.py":
            continue   # its examples
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:   # deleted in the work tree, not yet in the index
            continue
        for n, line in enumerate(lines, 1):
            seen += bool(_NOQA.search(line) or _IGNORE.search(line))
            why = problem(line)
            if why:
                bad += 1
                print(f"{path}:{n}: {why}: {line.strip()}")
    if bad:
        print(f"{bad} suppression(s) without codes or reason (write `# noqa: CODE - why` or "
              f"`# type: ignore[code]  # why`)")
        return 1
    print(f"{seen} lines with noqa / type: ignore, each with its codes and a reason")
    return 0


if __name__ == "__main__":
    sys.exit(main())
