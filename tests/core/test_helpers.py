"""The suite's own helpers, checked to fail where they must."""

from helpers import passed_on


def test_passed_on_needs_both_the_status_and_the_basis():
    """The helper's own check: ``(A and B) or C`` once let a failed check through (issue 29)."""
    failed = {"status": "failed", "basis": "rel ≤ 16 × the fp32 unit roundoff"}
    assert not passed_on(failed, "upstream fp32 error", "unit roundoff")
    assert not passed_on({"status": "passed", "basis": "something else"}, "upstream fp32 error", "unit roundoff")
    assert passed_on({**failed, "status": "passed"}, "upstream fp32 error", "unit roundoff")
