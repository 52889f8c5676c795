"""The grader's judgement of one item, driven by an in-process stand-in for the sandboxed child."""

from __future__ import annotations

import time

import pytest
import torch

from rectifiers.grading import checking, engine, probe
from rectifiers.grading import item as it
from rectifiers.grading.items import examples as ex


class FakeChild:
    """Answers probes in-process, as the sandboxed runner would; ``alter`` can corrupt replies."""

    def __init__(self, namespace, alter=None, fail=None):
        self.namespace, self.alter, self.fail = namespace, alter, fail
        self.replies = []
        self.output = engine._CappedOutput()

    def send(self, message):
        reply = {
            "type": "reply",
            "nonce": message["nonce"],
            "reply": probe.handle(self.namespace, message["request"]),
        }
        self.replies.append(self.alter(reply) if self.alter else reply)

    def receive(self, deadline):
        if self.fail:
            raise self.fail
        return self.replies.pop(0)


def judge(item, child, errors=()):
    return checking.check_item(
        child,
        item,
        torch.Generator().manual_seed(0),
        time.monotonic() + 60,
        list(errors),
        call_timeout=2.5,
        memory_mb=4096,
    )


def _leaky(x, negative_slope=0.01):
    return torch.where(x > 0, x, negative_slope * x)


def test_a_right_answer_passes_public_and_hidden_cases():
    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({"leaky_relu": _leaky}))
    assert (outcome.status, alive) == ("passed", True) and outcome.detail == "all 9 cases passed"


def test_a_wrong_hidden_answer_fails_and_says_which_case():
    public = [case.args[0] for case in ex.LEAKY_RELU.public_cases()]

    def public_only(x, negative_slope=0.01):
        # Hard-coded to the public inputs, as a learner might do to pass the notebook's check.
        if any(x.shape == p.shape and x.dtype == p.dtype and torch.equal(x, p) for p in public):
            return _leaky(x, negative_slope)
        return x

    outcome, _ = judge(ex.LEAKY_RELU, FakeChild({"leaky_relu": public_only}))
    assert (
        outcome.status == "failed" and "hidden case" in outcome.detail and "Hint:" in outcome.detail
    )


def test_not_defined_mentions_the_first_failing_cell():
    errors = [
        {"index": 2, "type": "NotImplementedError", "message": "x"},
        {"index": 5, "type": "MemoryError", "message": "big"},
    ]
    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({}), errors)
    assert (outcome.status, alive) == ("failed", True)
    assert (
        outcome.detail == "not attempted: `leaky_relu` is not defined "
        "(cell 5 raised MemoryError: big [memory limit 4096 MB])"
    )


def test_timeouts_and_lost_children_end_the_childs_use():
    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({}, fail=engine._Timeout()))
    assert (outcome.status, alive) == (
        "timeout",
        False,
    ) and "no answer within 2.5 s" in outcome.detail
    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({}, fail=engine._Lost("was killed by SIGKILL")))
    assert (outcome.status, alive) == ("error", False) and "was killed by SIGKILL" in outcome.detail
    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({}, fail=engine._Protocol("bad frame")))
    assert (outcome.status, alive) == ("error", False) and "bad frame" in outcome.detail


@pytest.mark.parametrize(
    "alter, fragment",
    [
        (lambda r: [r], "unexpected reply"),
        (lambda r: {**r, "nonce": "x"}, "unexpected reply"),
        (lambda r: {**r, "type": "result"}, "unexpected reply"),
        (lambda r: {**r, "reply": "ok"}, "unexpected reply"),
        (lambda r: {**r, "reply": {"status": "passed"}}, "bad reply status"),
        (lambda r: {**r, "reply": {"status": "ok"}}, "bad reply status"),
    ],
)
def test_malformed_replies_are_protocol_errors(alter, fragment):
    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({"leaky_relu": _leaky}, alter=alter))
    assert (outcome.status, alive) == ("error", False) and fragment in outcome.detail


def test_an_output_that_cannot_be_decoded_is_an_error():
    bad = {"status": "ok", "output": {"$tensor": {"dtype": "float32", "shape": [9], "data": ""}}}
    outcome, alive = judge(
        ex.LEAKY_RELU, FakeChild({"leaky_relu": _leaky}, alter=lambda r: {**r, "reply": bad})
    )
    assert (outcome.status, alive) == ("error", True) and "cannot be checked" in outcome.detail


def test_errors_raised_by_the_learner_are_reported_with_a_memory_note():
    def hungry(x, negative_slope=0.01):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    outcome, alive = judge(ex.LEAKY_RELU, FakeChild({"leaky_relu": hungry}))
    assert (outcome.status, alive) == ("error", True)
    assert "raised RuntimeError" in outcome.detail and "[memory limit 4096 MB]" in outcome.detail


def _broken(**overrides):
    options = {"reference": _leaky, "public": [it.Case((torch.ones(2),))]}
    options.update(overrides)
    return it.FunctionItem("demo.broken", 1, "leaky_relu", **options)


@pytest.mark.parametrize(
    "item",
    [
        _broken(reference=lambda x: 1 / 0),
        _broken(hidden=lambda rng: [it.Case((object(),))]),
        _broken(hidden=lambda rng: 1 / 0),
    ],
    ids=["reference", "request", "hidden_cases"],
)
def test_a_bug_in_an_item_is_the_graders_error_not_a_zero_for_everyone(item):
    outcome, alive = judge(item, FakeChild({"leaky_relu": _leaky}))
    assert (outcome.status, alive) == ("error", True)
    assert outcome.detail.startswith(
        "grader error in item demo.broken (not the submission's fault)"
    )


def test_a_compare_that_chokes_is_a_fail():
    class Choking(it.FunctionItem):
        def compare(self, student_output, expected):
            raise ValueError("odd output")

    item = Choking(
        "demo.choke", 1, "leaky_relu", reference=_leaky, public=[it.Case((torch.ones(2),))]
    )
    outcome, _ = judge(item, FakeChild({"leaky_relu": _leaky}))
    assert (
        outcome.status == "failed"
        and "could not be compared (ValueError: odd output)" in outcome.detail
    )


def test_describe_exit_and_clean():
    assert engine._describe_exit(None) == "ended without reporting a status"
    assert engine._describe_exit(3) == "exited with code 3"
    assert engine._describe_exit(-11) == "was killed by SIGSEGV (segmentation fault)"
    assert engine._describe_exit(-200) == "was killed by signal 200"
    assert "broke the Python runtime" in engine._describe_exit(engine.RUNNER_FAILED)
    assert engine._clean("a\x00b\n\n c" + "x" * 400, 20) == "a b c" + "x" * 12 + "..."


def test_capped_output_keeps_head_and_tail():
    output = engine._CappedOutput(head=4, tail=4)
    for chunk in (b"abc", b"defgh", b"ijklmnop"):
        output.add(chunk)
    assert output.total == 16
    assert output.value() == b"abcd\n[... 8 bytes of output not kept ...]\nmnop"
