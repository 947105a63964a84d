#!/usr/bin/env python3
"""Compares an Autobahn report with the committed expectations.

usage: check.py REPORT_DIR AGENT EXPECTED.json [--write] [--exclude PATTERNS]

Fails (exit 1) when a case is missing or its behavior / behaviorClose differs from the
expected one, unless it moved to OK (an improvement: printed, and --write records it).
--write replaces EXPECTED.json with this report's results (merged into it when cases
were excluded). --exclude takes the comma-separated case patterns the run left out
(`12.2.*,13.2.*`): expected cases matching them are not required.
"""
import fnmatch
import json
import sys


def load_report(report_dir, agent):
    with open(f"{report_dir}/index.json") as f:
        index = json.load(f)
    if agent not in index:
        sys.exit(f"agent {agent!r} not in {report_dir}/index.json (agents: {list(index)})")
    return {case: [r["behavior"], r["behaviorClose"]] for case, r in index[agent].items()}


def case_key(case):
    return [int(part) for part in case.split(".")]


def main():
    argv = sys.argv[1:]
    excluded = []
    if "--exclude" in argv:
        at = argv.index("--exclude")
        excluded = [p for p in argv[at + 1].split(",") if p] if at + 1 < len(argv) else []
        del argv[at:at + 2]
    args = [a for a in argv if a != "--write"]
    if len(args) != 3:
        sys.exit(__doc__)
    report_dir, agent, expected_path = args
    actual = load_report(report_dir, agent)

    def skipped(case):
        return any(fnmatch.fnmatch(case, p) for p in excluded)

    if "--write" in argv:
        merged = {}
        if excluded:
            with open(expected_path) as f:
                merged = {c: r for c, r in json.load(f).items() if skipped(c)}
        merged.update(actual)
        ordered = {case: merged[case] for case in sorted(merged, key=case_key)}
        lines = [f"{json.dumps(case)}: {json.dumps(result)}" for case, result in ordered.items()]
        with open(expected_path, "w") as f:
            f.write("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"wrote {len(ordered)} cases to {expected_path}")
        return
    with open(expected_path) as f:
        expected = json.load(f)
    regressions, improvements = [], []
    for case in sorted(expected, key=case_key):
        if skipped(case):
            continue
        want = expected[case]
        got = actual.get(case)
        if got == want:
            continue
        if got is not None and all(g == w or g == "OK" for g, w in zip(got, want)):
            improvements.append(f"{case}: {want} -> {got}")
        else:
            regressions.append(f"{case}: expected {want}, got {got or 'nothing (case not run)'}")
    extra = sorted(set(actual) - set(expected), key=case_key)
    counts = {}
    for behavior, _ in actual.values():
        counts[behavior] = counts.get(behavior, 0) + 1
    print(f"autobahn {agent}: {len(actual)} cases, {counts}")
    for line in improvements:
        print(f"  improved  {line}")
    if extra:
        print(f"  not in the expectations (not judged): {' '.join(extra)}")
    for line in regressions:
        print(f"  REGRESSED {line}")
    if regressions:
        sys.exit(1)


if __name__ == "__main__":
    main()
