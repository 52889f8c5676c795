"""Graded exercises: the notebook format, the public checks, and the ``grade-exercises`` grader.

**The exercise notebooks.** ``solutions/NN_topic.ipynb`` is the single source;
``exercises/NN_topic.ipynb`` is generated from it by ``make exercises`` (the ``make-exercises``
command, ``rectifiers.grading.generate``), and ``make-exercises --check`` fails, naming the
file, when a committed exercise notebook is not what the solution generates. In a solution:

- the code the learner must write sits between a line ``# BEGIN SOLUTION`` and a line
  ``# END SOLUTION``; the exercise gets ``raise NotImplementedError("Exercise <item id>: ...")``
  at the same indentation instead;
- an auto-graded item is a function, class or value the learner defines under a stated name in
  a code cell; the next code cell is exactly ``check("<item id>", globals())``, with
  ``from rectifiers.grading import check`` imported once near the top;
- a written answer is a markdown cell tagged ``manual`` with cell metadata
  ``{"grading": {"id": "<item id>"}}``, followed by its rubric in a markdown cell tagged
  ``solution``;
- cells tagged ``solution`` and the worked parts of sphinx-exercise ``solution-start`` /
  ``solution-end`` blocks are left out of the exercise; outputs are cleared;
- code cells tagged ``grading-skip`` are not run by the grader: tag the slow demonstrations
  that no exercise depends on (a cell defining an item must not carry it).

**Items** live in this package, never in notebooks: ``rectifiers.grading.items.nbNN_topic``
defines ``NOTEBOOK = "NN_topic"`` and ``ITEMS``, a list of ``Item``
(``FunctionItem``, ``ValueItem``, ``ModuleItem``, ``ManualItem``, or a subclass of ``AutoItem``),
each with its id, points, the name the learner defines and a hint; auto items also have public
cases, hidden cases drawn from a fresh secret seed at grading time, a reference computed by
trusted code, and a comparison. ``rectifiers.grading.items.REGISTRY`` collects them.

**The learner** runs the check cell: ``check`` runs the public cases in the notebook and
shows one line, PASS, FAIL (the first difference and a hint), NOT ATTEMPTED or WRITTEN ANSWER.

**The instructor** collects one folder per student, each with the completed notebooks named as
in ``exercises/`` (``submissions/alice/01_motivation.ipynb``), and runs::

    grade-exercises submissions --out grades --jobs 2

Options: ``--timeout SECONDS`` per notebook (default 60), ``--jobs N`` notebooks at a time
(default 1), ``--memory-mb MB`` per notebook (default and maximum 4096), ``--notebooks
01_motivation,02_derivatives`` to grade some notebooks only, ``--seed N`` to reproduce the hidden
inputs of an earlier run, ``--include-examples`` to also grade the example set ``00_examples``
(try it on ``tests/fixtures/grading``). The exit status is 0 when everything handed in was graded,
whatever the scores; 2 for a usage error; 1 if the grader itself failed. A progress bar shows on
a terminal.

**The output folder** (each file written atomically by the grader's trusted process):

- ``grades.csv``: one row per student, notebook and exercise: ``student, notebook, exercise,
  points, max_points, status, detail``; ``status`` is ``passed``, ``failed`` (wrong or not
  attempted), ``error`` (the code raised or crashed, or the notebook is unreadable),
  ``timeout``, ``manual`` (a written answer: 0 points until the instructor marks it; the detail
  holds the answer) or ``missing`` (notebook not handed in);
- ``summary.csv``: per student ``points`` (auto-graded), ``max_points``, ``manual_max_points``
  (the part waiting for marks) and ``notebooks_missing``;
- ``results/<student>/<notebook>.json``: the same in Gradescope's ``results.json`` format, with
  the hidden-case seed in ``extra_data``;
- ``logs/<student>/<notebook>.log``: what the notebook printed (first and last 32 KiB);
- ``run.json``: the settings, the sandbox that was used and the timings.

**Sandbox.** Each notebook runs in its own process, forked from a pre-started process that
imported torch once: a new session; a fresh temporary working directory (also its home); a
scrubbed environment; limits on address space (``--memory-mb``), CPU time, file size, open files
and processes, and no core dumps; a wall-clock timeout that kills its whole process group. The
process only executes the notebook's cells and then answers the grader's requests with plain data
over a private socket; the grader computes the expected outputs itself and compares, so printed
or forged scores, patched ``torch``/``numpy``/built-ins and fake messages earn nothing. Run as
root (as CI does), the process also switches to a dedicated unprivileged uid (every process of
that uid is killed after each notebook) and, where Linux namespaces are available, gets its own
PID, network, IPC and mount namespaces: no network, background processes die with it, every
file system is read-only except its working directory, and the submissions and output folders
are hidden. Not root, it gets the same namespaces inside a user namespace where the kernel allows
them (the read-only mounts then protect the instructor's files); without them only the limits,
the temporary directory and the process group remain, and the notebook runs with the
instructor's own permissions. ``run.json`` records which of these applied.

Known limits: the reference solutions are in this package, which learners have installed, so
the grader checks behaviour, not authorship; a notebook whose code depends on a cell tagged
``grading-skip`` fails where it depends on it.
"""

from .item import Case, FunctionItem, Item, ManualItem, ModuleItem, ModuleSpec, ValueItem
from .public import check

__all__ = [
    "Case",
    "FunctionItem",
    "Item",
    "ManualItem",
    "ModuleItem",
    "ModuleSpec",
    "ValueItem",
    "check",
]
