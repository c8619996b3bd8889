#!/usr/bin/env python3
"""Totals one conformance run's checks.json files and enforces the expected-failures list.

The suite's own exit code covers scored scenarios only; this also covers the not-scored ones
it runs (extensions, pending), so nothing it reports can fail unnoticed.

usage: gate.py RESULTS_DIR EXPECTED_FAILURES_YML LABEL
Prints "conformance LABEL: P checks passed, F failed (E expected)"; exits 1 on an unlisted
failure or a listed scenario that passed.
"""
import json
import re
import sys
from pathlib import Path


def expected(path: Path) -> set:
    names = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*-\s*([A-Za-z0-9_./:-]+)\s*(#.*)?$", line)
        if m:
            names.add(m.group(1))
    return names


def main() -> int:
    results, listed, label = Path(sys.argv[1]), expected(Path(sys.argv[2])), sys.argv[3]
    passed = failed = expected_failed = 0
    bad, stale, seen = [], [], set()
    runs = sorted(results.glob("server-*/checks.json"))
    if not runs:
        print(f"conformance {label}: no results under {results}")
        return 1
    for checks_file in runs:
        scenario = re.sub(r"^server-|-\d{4}-\d\d-\d\dT[\d-]+Z$", "", checks_file.parent.name)
        seen.add(scenario)
        checks = json.loads(checks_file.read_text())
        fails = [c for c in checks if c.get("status") == "FAILURE"]
        passed += sum(1 for c in checks if c.get("status") == "SUCCESS")
        if scenario in listed:
            if fails:
                expected_failed += len(fails)
            else:
                stale.append(scenario)
        elif fails:
            failed += len(fails)
            for c in fails:
                bad.append(f"{scenario}: {c.get('name') or c.get('id')}: {c.get('errorMessage', '')}")
    print(
        f"conformance {label}: {passed} checks passed, {failed} failed"
        f" ({expected_failed} expected failures in {len(listed & seen)} listed scenarios)"
    )
    for line in bad:
        print(f"  UNEXPECTED FAILURE {line}")
    for scenario in stale:
        print(f"  listed as failing but passed (remove it from the list): {scenario}")
    return 1 if bad or stale else 0


if __name__ == "__main__":
    sys.exit(main())
