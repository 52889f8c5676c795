"""``bench.json`` (merging a partial run into earlier results) and its Markdown tables.

The Markdown has one block per benchmark between ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->`` markers, so the book's Performance page can include each block
next to the text that explains it (MyST ``{include}`` with ``:start-after:``/``:end-before:``).
Every block is always present; a benchmark that was not run says so.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import setup as _setup
from ._core import MISS, NOT_MEASURED, PASS, now

SCHEMA = 1
ORDER = [
    "notebooks",
    "training",
    "layers",
    "kernels",
    "make_test",
    "book",
    "grading",
    "microtimings",
    "setup",
]
TITLES = {
    "notebooks": "Notebooks",
    "training": "Batched against one-by-one training and torch.func",
    "layers": "The batched trainer's time per step, by layer",
    "kernels": "From-scratch activations against PyTorch's kernels",
    "make_test": "make test",
    "book": "Cached book rebuild",
    "grading": "Grading",
    "microtimings": "Micro-timings",
    "setup": "Set-up: installing the lock from a fresh clone",
}


def merge(previous: dict | None, sections: dict, machine: dict, git: dict) -> dict:
    """``bench.json``: ``previous`` with the newly measured ``sections`` replacing theirs.

    Sections not measured in this run are kept as they were (each carries its own date, machine
    and load), so ``--only kernels`` updates one part without discarding the rest.
    """
    kept = dict(previous.get("benchmarks", {})) if previous else {}
    if previous and previous.get("schema") != SCHEMA:
        kept = {}  # another layout: do not mix
    kept.update(sections)
    ordered = {name: kept[name] for name in ORDER if name in kept}
    budgets = []
    for name, section in ordered.items():
        for entry in section.get("budgets", []):
            budgets.append(
                {
                    **entry,
                    "benchmark": name,
                    "measured_at": section["measured_at"],
                    "quick": section["quick"],
                }
            )
    counts = {
        status: sum(1 for b in budgets if b["status"] == status)
        for status in (PASS, MISS, NOT_MEASURED)
    }
    return {
        "schema": SCHEMA,
        "updated": now(),
        "machine": machine,
        "git": git,
        "benchmarks": ordered,
        "budgets": budgets,
        "budget_counts": counts,
    }


def load(path: Path) -> dict | None:
    """The ``bench.json`` at ``path``, or ``None`` if absent or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def fmt(value, digits: int = 2) -> str:
    """A number for a table: ``digits`` decimals (significant digits below ``10**-digits``).

    Example:
        >>> fmt(3.14159), fmt(None), fmt(1234.5, 1), fmt(0.000123), fmt(7)
        ('3.14', '-', '1234.5', '0.00012', '7')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.{digits}g}"  # small: significant digits, not a row of zeros
    return f"{value:.{digits}f}"


def code(text: str) -> str:
    """Text as an inline code span that is safe in a Markdown table cell."""
    return "`" + text.replace("`", "'").replace("|", "\\|").strip() + "`" if text.strip() else ""


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a Markdown pipe table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _status(entry: dict) -> str:
    status = {PASS: "pass", MISS: "**MISS**", NOT_MEASURED: "not measured"}[entry["status"]]
    return f"{status}: {code(entry['note'][:80])}" if entry.get("note") else status


def _limit(entry: dict) -> str:
    word = "at most" if entry["comparison"] == "<=" else "at least"
    return f"{word} {entry['limit']:g} {entry['unit']}".strip()


def _measured(entry: dict) -> str:
    return (
        f"{fmt(entry['measured'], 3 if entry['unit'] == '' else 2)} {entry['unit']}".strip()
        if entry["measured"] is not None
        else "-"
    )


def provenance(section: dict) -> str:
    """One line: when, on what, under which load a section was measured."""
    m = section.get("machine", {})
    before = section.get("load_average_before") or ["?"] * 3
    after = section.get("load_average_after") or ["?"] * 3
    quick = (
        " **Quick mode: smaller workload, not comparable with the budgets.**"
        if section.get("quick")
        else ""
    )
    commit = (section.get("git") or {}).get("commit") or "unknown"
    return (
        f"*Measured {section.get('measured_at', '?')} on {m.get('cpu_model', '?')} "
        f"({m.get('usable_cores', '?')} usable cores), torch {m.get('torch_version', '?')}, "
        f"{m.get('torch_threads', '?')} threads, OMP_WAIT_POLICY "
        f"{m.get('omp_wait_policy') or 'unset (OpenMP default)'}, commit `{commit[:10]}`; "
        f"load average "
        f"(1, 5, 15 min) {before} before, {after} after.*{quick}"
    )


def _notebooks(results: dict) -> list[str]:
    rows = []
    for name, entry in results["notebooks"].items():
        if "error" in entry:
            rows.append([code(name), "failed", "-", "-", "-", code(entry["error"][:100])])
            continue
        slowest = entry["slowest_cells"][:1]
        cell = (
            (
                f"{fmt(slowest[0]['seconds'])} s, cell {slowest[0]['index']}: "
                f"{code(slowest[0]['source'][:50])}"
            )
            if slowest
            else "-"
        )
        rows.append(
            [
                code(name),
                fmt(entry["seconds"]),
                fmt(entry["startup_seconds"]),
                fmt(entry["cells_seconds"]),
                fmt(entry["peak_rss_mib"], 0),
                cell,
            ]
        )
    for folder, total in results["totals"].items():
        label = "all notebooks" if folder == "all" else f"{folder}/ total"
        rows.append(
            [
                f"**{label}**",
                f"**{fmt(total['seconds'])}**",
                "",
                "",
                "",
                f"{total['notebooks']} notebooks"
                + (f", {len(total['failed'])} failed" if total["failed"] else ""),
            ]
        )
    return table(
        [
            "Notebook",
            "Wall time (s)",
            "Start-up (s)",
            "Cells (s)",
            "Peak memory (MiB)",
            "Slowest cell",
        ],
        rows,
    )


TRAINER_LABELS = {
    "batched": "Batched trainer",
    "func": "`torch.func` ensemble",
    "loop": "One-by-one loop",
}


def _training(results: dict) -> list[str]:
    f32, f64 = results["float32"], results["float64"]
    trainers = [key for key in TRAINER_LABELS if f"{key}_seconds_by_threads" in results]
    rows = []
    for key in trainers:
        for threads, seconds in results[f"{key}_seconds_by_threads"].items():
            rows.append([TRAINER_LABELS[key], threads, fmt(seconds)])
    lines = [
        f"{results['models']} MLPs {results['sizes']} ({len(results['slopes'])} slopes "
        f"x {len(results['seeds'])} seeds), {results['epochs']} epochs of "
        f"{results['train_examples']} MNIST-1D signals, {results['optimizer']}, "
        f"learning rate {results['lr']}, batches of {results['batch_size']}.",
        "",
    ]
    lines += table(["Trainer", "Threads", "Wall time (s, median)"], rows)
    lines += [
        "",
        f"**Speed-up: {fmt(results['speedup'])}x** (batched at "
        f"{results['batched_threads']} thread(s) against the loop at "
        f"{results['loop_threads']}; {fmt(results['speedup_same_threads'])}x at "
        f"{results['configured_threads']} threads each).",
        "",
    ]
    if "speedup_vs_func" in results:
        lines += [
            f"**Against `torch.func`: {fmt(results['speedup_vs_func'])}x** (the ensemble at "
            f"{results['func_threads']} thread(s), itself {fmt(results['func_speedup'])}x "
            f"the loop).",
            "",
        ]
    if "profile" in results:
        batched, loop = results["profile"]["batched"], results["profile"]["loop"]
        lines += [
            f"Matrix products, by the torch profiler over one epoch: the batched trainer "
            f"spends {fmt(batched['matmul_seconds_per_epoch'])} s of its "
            f"{fmt(batched['seconds_per_epoch'])} s in them, the loop "
            f"{fmt(loop['matmul_seconds_per_epoch'])} s of "
            f"{fmt(loop['seconds_per_epoch'])} s. Stacking removes overhead, not "
            f"arithmetic: even if everything else cost nothing, the batched trainer could "
            f"be at most **{fmt(results['speedup_ceiling'])}x** faster than the loop.",
            "",
        ]
        if "speedup_ceiling_arithmetic" in results:
            groups = ("matmul", "optimizer", "activation", "loss")
            names = {
                "matmul": "matrix products",
                "optimizer": "optimizer (fused Adam)",
                "activation": "activations",
                "loss": "loss (log-softmax, NLL or gather)",
            }
            profile_rows = []
            for group in groups:
                profile_rows.append(
                    [names[group]]
                    + [
                        fmt(results["profile"][key][f"{group}_seconds_per_epoch"], 3)
                        for key in trainers
                    ]
                )
            profile_rows.append(
                ["everything else (Python, dispatch, autograd, copies)"]
                + [
                    fmt(
                        results["profile"][key]["seconds_per_epoch"]
                        - sum(results["profile"][key][f"{g}_seconds_per_epoch"] for g in groups),
                        3,
                    )
                    for key in trainers
                ]
            )
            profile_rows.append(
                ["**one epoch, profiled**"]
                + [
                    f"**{fmt(results['profile'][key]['seconds_per_epoch'], 3)}**"
                    for key in trainers
                ]
            )
            overhead = results["overhead_ms_per_step"]
            lines += table(
                ["Seconds per epoch, by kernel"]
                + [
                    f"{TRAINER_LABELS[key]} ({results['profile'][key]['threads']} thr.)"
                    for key in trainers
                ],
                profile_rows,
            )
            lines += [
                "",
                f"Per-step overhead, the CPU time of the same steps on tiny tensors: "
                f"{fmt(overhead['batched_ms_per_step'])} ms for one batched step of all "
                f"{results['models']} models, {fmt(overhead['loop_ms_per_step'])} ms for one "
                f"step of one model in the loop. With the optimizer's, activations' and loss's "
                f"per-element work counted as irreducible too (the loop does the same), the "
                f"ceiling is **{fmt(results['speedup_ceiling_arithmetic'])}x**.",
                "",
            ]
    header = ["Agreement with the loop", "batched, float32 (the run above)"]
    columns = [f32]
    if "float32_func" in results:
        header.append("`torch.func`, float32")
        columns.append(results["float32_func"])
    header.append(f"batched, float64 ({f64['epochs']} epochs)")
    columns.append(f64)
    if "float64_func" in results:
        header.append("`torch.func`, float64")
        columns.append(results["float64_func"])
    lines += table(
        header,
        [
            ["largest final-accuracy difference (test examples)"]
            + [str(c["max_accuracy_difference_examples"]) for c in columns],
            ["largest relative final-loss difference"]
            + [fmt(c["max_relative_loss_difference"], 6) for c in columns],
            ["largest parameter difference"]
            + [
                f"{c['max_abs_parameter_difference']:.1e}"
                if c["max_abs_parameter_difference"] < 1e-6
                else fmt(c["max_abs_parameter_difference"], 6)
                for c in columns
            ],
            ["mean final accuracy, loop / stacked"]
            + [
                f"{fmt(c['mean_accuracy_loop'], 4)} / {fmt(c['mean_accuracy_batched'], 4)}"
                for c in columns
            ],
        ],
    )
    return lines


def _layers(results: dict) -> list[str]:
    rows = [
        [
            name,
            fmt(entry["ms_per_step"]),
            str(entry["threads"]),
            f"{fmt(entry['relative_to_fixed_slopes'])}x",
        ]
        for name, entry in results["variants"].items()
    ]
    lines = [
        f"{results['models']} models trained together, one epoch of "
        f"{results['train_examples']} MNIST-1D signals in batches of {results['batch_size']}, "
        f"{results['optimizer']}; median wall time per optimizer step at each variant's best "
        "thread count.",
        "",
    ]
    return lines + table(
        ["Models (all 40 in one stack)", "ms per step", "Threads", "vs fixed slopes"], rows
    )


def _kernels(results: dict) -> list[str]:
    rows = []
    for row in results["sizes"]:
        for name in ("leaky_relu", "prelu"):
            entry = row[name]
            builtin, scratch = entry["builtin"], entry["scratch"]
            rows.append(
                [
                    f"{row['elements']:.0e}",
                    code(name),
                    fmt(builtin["forward_backward_seconds"] * 1e6, 1),
                    fmt(scratch["forward_backward_seconds"] * 1e6, 1),
                    f"{fmt(entry['forward_backward_ratio'])}x",
                    f"{fmt(entry['forward_ratio'])}x",
                    fmt(builtin["forward_backward_gb_per_s"]),
                    fmt(scratch["forward_backward_gb_per_s"]),
                    fmt(row["copy_gb_per_s"]),
                ]
            )
    return [
        f"{results.get('dtype', 'float32')}, {results.get('threads', '?')} intra-op "
        f"thread(s); ratios are from-scratch time over built-in time.",
        "",
    ] + table(
        [
            "Elements",
            "Function",
            "Built-in fwd+bwd (µs)",
            "From scratch fwd+bwd (µs)",
            "Ratio fwd+bwd",
            "Ratio fwd",
            "Built-in GB/s",
            "From scratch GB/s",
            "Copy GB/s (clone)",
        ],
        rows,
    )


def _make_test(results: dict) -> list[str]:
    status = (
        "passed"
        if results["passed"]
        else (
            "timed out" if results["timed_out"] else f"failed (exit status {results['returncode']})"
        )
    )
    rows = [[code(part), fmt(seconds, 1)] for part, seconds in results["phases_seconds"].items()]
    rows.append(["**make test**", f"**{fmt(results['seconds'], 1)}**"])
    lines = [f"`make test` {status}.", ""] + table(["Part", "Wall time (s)"], rows)
    if results.get("failures"):
        lines += ["", "What failed:", ""] + [
            f"- {code(line[:150])}" for line in results["failures"][:10]
        ]
    return lines


def _book(results: dict) -> list[str]:
    rows = [
        [
            str(i + 1),
            fmt(run["seconds"]),
            str(run["executed_notebooks"]),
            str(run["cached_notebooks"]),
        ]
        for i, run in enumerate(results["runs"])
    ]
    return (
        [
            f"Prose edit in {code(results['edited'])}; warm-up build of the copy "
            f"{fmt(results['warmup_seconds'], 1)} s.",
            "",
        ]
        + table(["Rebuild", "Wall time (s)", "Notebooks executed", "Notebooks from cache"], rows)
        + ["", f"**Median: {fmt(results['seconds'])} s.**"]
    )


def _grading(results: dict) -> list[str]:
    one, whole = results["submission"], results["class"]
    rows = [
        [
            "one submission (`--jobs 1`)",
            "1",
            fmt(one["seconds"]),
            fmt(one["seconds_per_notebook"]),
            "-",
        ],
        [
            f"a class (`--jobs {whole['jobs']}`)",
            str(whole["students"]),
            fmt(whole["seconds"]),
            fmt(whole["wall_seconds_per_notebook"]),
            fmt(whole["grader_seconds_per_notebook"]),
        ],
    ]
    marks = (
        "every submission earned every auto-graded point"
        if results["all_full_marks"]
        else "**some solved submissions lost points: the grading figures are suspect**"
    )
    lines = [
        f"Notebooks graded per student: {', '.join(code(n) for n in results['notebooks'])}; "
        f"{marks}; sandbox: {whole['sandbox']}.",
        "",
    ] + table(
        [
            "Run",
            "Students",
            "Wall time (s)",
            "Wall time per notebook (s)",
            "Grader's own time per notebook (s)",
        ],
        rows,
    )
    lost = [row for run in [*one["runs"], whole] for row in run.get("problems", [])]
    if lost:
        lines += ["", "Points lost by solved notebooks (first few):", ""]
        lines += table(
            ["Student", "Notebook", "Exercise", "Status", "Detail"],
            [
                [
                    row["student"],
                    code(row["notebook"]),
                    code(row["exercise"]),
                    row["status"],
                    code(row["detail"][:120]),
                ]
                for row in lost[:5]
            ],
        )
    return lines


def _microtimings(results: dict) -> list[str]:
    ce, el = results["cross_entropy"], results["elementwise"]
    clone, mm = results["clone_us_by_threads"], results["matmul_gflops_by_threads"]
    size = f"{results['size']:.0e}".replace("e+0", "e")
    return table(
        ["Micro-timing", "Measured"],
        [
            [
                "`F.cross_entropy` forward + backward, 40 x 100 logits as (4000, 10)",
                f"{fmt(ce['last_dim_ms'])} ms",
            ],
            [
                "the same logits as (40, 10, 100): classes in the middle dimension",
                f"{fmt(ce['middle_dim_ms'])} ms",
            ],
            [
                "the batched trainer's `losses` on the same logits (classes first, padded)",
                f"{fmt(ce['stacked_losses_ms'])} ms"
                if "stacked_losses_ms" in ce
                else "not measured",
            ],
            [f"`torch.where(mask, x, zeros)`, {size} floats, 1 thread", f"{el['where_us']} µs"],
            [f"`x * 0.01`, {size} floats, 1 thread", f"{el['multiply_us']} µs"],
            [f"`F.leaky_relu(x, 0.01)`, {size} floats, 1 thread", f"{el['leaky_relu_us']} µs"],
            [f"`x.clone()`, {size} floats, 1 / 2 threads", f"{clone['1']} / {clone['2']} µs"],
            [
                "`torch.bmm`, 40 products 100 x 100 by 100 x 100, 1 / 2 threads",
                f"{mm['batched_40x100']['1']} / {mm['batched_40x100']['2']} GFLOP/s",
            ],
            [
                "`torch.bmm`, one product 1000 x 1000 by 1000 x 1000, 1 / 2 threads",
                f"{mm['single_1000']['1']} / {mm['single_1000']['2']} GFLOP/s",
            ],
        ],
    )


RENDERERS = {
    "notebooks": _notebooks,
    "training": _training,
    "layers": _layers,
    "kernels": _kernels,
    "make_test": _make_test,
    "book": _book,
    "grading": _grading,
    "microtimings": _microtimings,
    "setup": _setup.render,
}


def render_section(name: str, section: dict | None) -> list[str]:
    """The Markdown lines of one benchmark's block (without its markers)."""
    if section is None:
        return ["Not measured yet."]
    if section["status"] == "missing":
        return [f"Not measured: the subject is missing ({section['reason']})."]
    if section["status"] == "error":
        return [provenance(section), "", f"**The benchmark failed:** {code(section['reason'])}"]
    return [provenance(section), ""] + RENDERERS[name](section["results"])


def render(bench: dict) -> str:
    """The whole Markdown report: the budgets table, then one block per benchmark."""
    lines = ["<!-- Written by `python -m benchmarks` from bench.json; do not edit by hand. -->", ""]
    rows = []
    for entry in bench["budgets"]:
        rows.append([entry["description"], _limit(entry), _measured(entry), _status(entry)])
    for name, section in bench["benchmarks"].items():
        if section["status"] != "ok":
            rows.append([TITLES[name], "-", "-", f"{section['status']}: {section['reason'][:80]}"])
    lines += ["<!-- bench:budgets:start -->", ""]
    lines += table(["Budget", "Limit", "Measured", "Result"], rows) if rows else ["No budgets yet."]
    lines += ["", "<!-- bench:budgets:end -->", ""]
    for name in ORDER:
        lines += [f"<!-- bench:{name}:start -->", ""]
        lines += render_section(name, bench["benchmarks"].get(name))
        lines += ["", f"<!-- bench:{name}:end -->", ""]
    return "\n".join(lines)


def misses(bench: dict) -> list[str]:
    """One line per missed or unmeasured budget and per benchmark that failed or could not run."""
    lines = []
    for entry in bench["budgets"]:
        note = f" ({entry['note']})" if entry.get("note") else ""
        quick = " (quick mode)" if entry["quick"] else ""
        if entry["status"] == MISS:
            lines.append(
                f"MISSED {entry['id']}: measured {_measured(entry)}, budget "
                f"{_limit(entry)}{quick}{note}"
            )
        elif entry["status"] == NOT_MEASURED:
            lines.append(f"NOT MEASURED {entry['id']}{quick}{note}")
    lines += [
        f"{section['status'].upper()} {name}: {section['reason']}"
        for name, section in bench["benchmarks"].items()
        if section["status"] != "ok"
    ]
    return lines
