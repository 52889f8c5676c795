"""Grades the hostile class of ``test_grading_hostile.py`` in a process of its own (no tests here).

Run as ``python tests/test_grading_hostile_driver.py SUBMISSIONS OUT MEMORY_MB [--only STUDENT,...]
[--weaker-isolation]``: grades with ``--jobs 2``, writes ``OUT/driver.json`` (rows, each
student's output, the sandbox report, clean-up problems, the disk cap and this process's peak
memory) and exits 0; exits 3 with the message on stderr when the grader refuses to start.
"""

from __future__ import annotations

import json
import resource
import sys


def main(argv: list[str]) -> int:
    from rectifiers.grading.engine import Grader
    from rectifiers.grading.items import EXAMPLES

    subs, out, memory_mb = argv[0], argv[1], int(argv[2])
    options = {"weaker_isolation": True} if "--weaker-isolation" in argv else {}
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    grader = Grader(EXAMPLES, timeout=60, jobs=2, call_timeout=5, memory_mb=memory_mb, **options)
    try:
        grader.start()
    except Exception as error:  # noqa: BLE001 - the refusal is what the caller checks
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 3
    try:
        chosen = set(only.split(",")) if only else set()
        selected = {"only": lambda student, notebook: student in chosen} if only else {}
        results = grader.grade(subs, hide=[out], **selected)
        sandbox = dict(grader.sandbox)
    finally:
        grader.close()
    report = {
        "rows": [
            {
                "student": r.student,
                "exercise": row.exercise,
                "status": row.status,
                "detail": row.detail,
            }
            for r in results
            for row in r.rows
        ],
        "outputs": {r.student: r.output.decode("utf-8", errors="replace") for r in results},
        "sandbox": sandbox,
        "cleanup_problems": getattr(grader, "cleanup_problems", []),
        "disk_mb": getattr(grader, "disk_mb", 256),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    with open(f"{out}/driver.json", "w") as handle:
        json.dump(report, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
