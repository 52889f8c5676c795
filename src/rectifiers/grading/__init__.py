"""Graded exercises: the notebook format, the public checks, and the ``grade-exercises`` grader.

The instructor's guide (collecting submissions, a local run, the grade book, re-grading, hand
marks, feedback, Canvas and Gradescope) is the book's page "Grading exercises"
(``chapters/grading.md``). In short::

    grade-exercises submissions --out grades --jobs 2        # grade a class into a grade book
    grade-exercises --out grades --marks marks.csv           # merge hand marks
    grade-exercises gradescope --out autograder.zip          # a Gradescope autograder

Modules: ``item`` (the item kinds), ``cases`` and ``compare`` (inputs and comparison rules),
``items`` (the course's exercises), ``public`` (the learner's ``check``), ``engine`` (grading
policy) with ``checking`` (one item's cases), ``gradebook`` with ``report``, ``marks``,
``feedback``, ``gradescope``, ``canvas`` and ``names`` (the output folder), ``autograder``
(Gradescope), ``cli`` (the command).
"""

from .item import Case, FunctionItem, Item, ManualItem, ModuleItem, ModuleSpec, ValueItem
from .public import check

# deliberately repeated: the item kinds of item.__all__, listed again as literals so that linters,
# type checkers and editors see the package's exports.
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
