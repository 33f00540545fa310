"""Are two output folders the same, byte for byte, apart from what must differ between runs?

A refactor that claims "behaviour unchanged" is checked with this (issue 28): run the same
command before and after, then

    python tools/compare_outputs.py BEFORE_DIR AFTER_DIR

Every file under either folder is compared byte for byte, except
- ``run.json``: compared as JSON without ``timings_s`` (seconds per stage differ per run);
- ``report.html``: compared without the generation time stamp (``YYYY-MM-DD HH:MM UTC``).
Exit status 0 when everything matches, 1 otherwise (the differing files are listed).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

_STAMP = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


def _normalised(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name == "run.json":
        record = json.loads(data)
        record.pop("timings_s", None)
        return json.dumps(record, sort_keys=True).encode()
    if path.name == "report.html":
        return _STAMP.sub(b"<time stamp>", data)
    return data


def differences(before: Path, after: Path) -> list[str]:
    """Relative paths that differ, or exist on one side only (``"+ x"`` / ``"- x"``)."""
    a = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    b = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    found = [f"- {p}" for p in sorted(a - b)] + [f"+ {p}" for p in sorted(b - a)]
    found += [f"~ {p}" for p in sorted(a & b) if _normalised(before / p) != _normalised(after / p)]
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    found = differences(args.before, args.after)
    total = sum(1 for p in args.before.rglob("*") if p.is_file())
    for line in found:
        print(line)
    print(f"{total} file(s) compared: " + ("identical" if not found else f"{len(found)} difference(s)"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
