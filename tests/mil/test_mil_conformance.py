"""coremltools' own MIL op tests through zoo's interpreter (a fast subset; the whole selection is
``benchmarks/mil_conformance.py``): no wrong result, no crash, and a canary proving the hook is live."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mil_conformance  # noqa: E402

pytestmark = pytest.mark.slow

#: op types the interpreter leaves out of scope (README): control flow with nested blocks, and the
#: recurrent layers other than lstm
OUT_OF_SCOPE = {"cond", "while_loop", "gru", "rnn"}


def outcomes(results: list[dict], kind: str) -> list[dict]:
    return [r for r in results if r["outcome"] == kind]


def test_first_case_of_every_op_test_executes_correctly(tmp_path):
    results = mil_conformance.run(
        list(mil_conformance.MODULES), subset=True, canary=False, report=tmp_path / "report.json"
    )
    assert len(outcomes(results, "passed")) > 100, "the suite did not run through the interpreter"
    bad = [
        f"{r['id'].split('ops/tests/')[-1]}: {r['detail'][:200]}"
        for r in results
        if r["outcome"] in ("wrong", "crashed", "other")
    ]
    assert not bad, "\n".join(bad)
    unsupported = {
        op
        for r in outcomes(results, "unsupported")
        for op in r["detail"].split("op type(s) ")[-1].split(" in function")[0].split(", ")
    }
    assert unsupported <= OUT_OF_SCOPE, unsupported


def test_canary_corrupted_relu_is_wrong_and_removed_sigmoid_unsupported(tmp_path):
    results = mil_conformance.run(
        ["iOS14/test_activation.py"],
        subset=True,
        canary=True,
        report=tmp_path / "report.json",
        extra=["-k", "TestReLU or TestSigmoid"],
    )
    by_class = {}
    for r in results:
        by_class.setdefault(r["class"], set()).add(r["outcome"])
    assert "wrong" in by_class["TestReLU"] and "passed" not in by_class["TestReLU"]
    assert "unsupported" in by_class["TestSigmoid"] and "passed" not in by_class["TestSigmoid"]
