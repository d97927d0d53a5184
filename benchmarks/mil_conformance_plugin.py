"""A pytest plugin that runs coremltools' own MIL op tests with zoo's interpreter as the runtime
(a benchmark's tool: zoo itself never imports pytest).

coremltools ships its op test suite in the wheel
(``coremltools/converters/mil/mil/ops/tests/iOS14 … iOS18``): each test builds a
program, converts it, predicts with CoreML and compares with expected values it
computed independently, at its own atol/rtol. Off macOS the comparison is gated
off. This plugin turns the gate on and answers ``MLModel.predict`` and
``MLModel.make_state`` with :mod:`zoo.core.mil`, touching no expected value and
no tolerance. Only the ``mlprogram`` backend and the CPU compute unit run (the
suite widens its tolerances for other units).

Each case ends as one of:

* ``passed`` — the interpreter executed the program and the suite's comparison held;
* ``wrong`` — it executed, and the comparison failed (the worst outcome);
* ``crashed`` — a kernel raised on a program CoreML accepts;
* ``unsupported`` — an op type the interpreter has no kernel for (named);
* ``fp16-below-tolerance`` — fp16-typed tensors judged at the suite's fp32 tolerance
  (atol 1e-4, below fp16's resolution); reported apart, never counted as passed, and
  ``wrong`` after all if the result is off by more than fp16 rounding explains;
* ``unreadable`` — the milproto loader cannot read the program back;
* ``skipped`` — skipped by the suite itself; ``nothing-executed`` — passed without
  calling predict (type inference or conversion tests).

Use it through ``benchmarks/mil_conformance.py``; options: ``--zoo-subset`` (the
first case of every test function), ``--zoo-report PATH`` (JSON of every case),
``--zoo-canary`` (corrupt the ``relu`` kernel and remove ``sigmoid``: relu cases
must come out wrong and sigmoid ones unsupported, proving the hook is live).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: the macOS the suite is told it runs on: the newest its gates know (some cases skip below 15.2)
MACOS = (15, 6)

#: outcome of the test running now: op types executed, the comparison's dtype, the failure class
_current: dict[str, Any] = {}
_results: list[dict[str, Any]] = []
_programs: dict[str, Any] = {}


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("zoo conformance")
    group.addoption("--zoo-subset", action="store_true", help="only the first case of every test function")
    group.addoption("--zoo-report", default=None, help="write every case's outcome to this JSON file")
    group.addoption("--zoo-canary", action="store_true", help="corrupt relu and remove sigmoid to prove the hook works")


def _program(model: Any) -> Any:
    from zoo.core.mil import MilProgram

    if model.get_spec().WhichOneof("Type") != "mlProgram":
        pytest.skip("a neuralnetwork model: zoo executes ML programs only")
    if not model.package_path:  # built from a spec in memory: save it, as CoreML compiles it
        import tempfile

        saved = (
            Path(tempfile.mkdtemp(prefix="zoo-conformance-", dir=".")).resolve() / "model.mlpackage"
        )  # the runner's work dir
        model.save(str(saved))
        model.package_path = str(saved)
    path = str(model.package_path)
    if path not in _programs:
        try:
            _programs[path] = MilProgram.load(path)
        except Exception as exc:  # noqa: BLE001
            from zoo.core.mil import UnsupportedOp

            if isinstance(exc, UnsupportedOp):
                raise
            raise _Unreadable(f"{type(exc).__name__}: {exc}") from exc
    return _programs[path]


class _Unreadable(RuntimeError):
    pass


def _predict(self: Any, data: Any, state: Any = None) -> dict[str, Any]:
    program = _program(self)
    function = program.function("main")
    _current.setdefault("ops", set()).update(step.op_type for step in function.steps)
    _current["fp16"] = (
        _current.get("fp16", False)
        or any(info.dtype == np.float16 for info in list(function.inputs.values()) + function.outputs)
        or any(dtype == np.float16 for step in function.steps for _, dtype, _ in step.outputs)
    )
    inputs = {k: np.asarray(v) for k, v in data.items()}
    _current["predicted"] = True
    return program.run(inputs, "main", state)


def _make_state(self: Any) -> Any:
    return _program(self).make_state("main")


def _wrap_compare(original: Any) -> Any:
    def compare_backend(*args: Any, **kwargs: Any) -> Any:
        _current["dtype"] = kwargs.get("dtype", "fp32")
        _current["tolerance"] = (kwargs.get("atol", 1e-4), kwargs.get("rtol", 1e-5))
        try:
            return original(*args, **kwargs)
        except AssertionError:
            if _current.get("dtype") == "fp32" and _current.get("fp16"):
                _current["fp16_case"] = _fp16_explains(original, args, kwargs)
            raise

    return compare_backend


def _fp16_explains(original: Any, args: tuple, kwargs: dict) -> bool:
    """Would the comparison hold at a tolerance fp16 rounding explains (rtol and atol 1e-2)?"""
    retry = dict(kwargs, atol=max(kwargs.get("atol", 1e-4), 1e-2), rtol=max(kwargs.get("rtol", 1e-5), 1e-2))
    try:
        original(*args, **retry)
        return True
    except AssertionError:
        return False


def pytest_configure(config: Any) -> None:
    import coremltools as ct
    import coremltools.converters.mil.mil.ops.tests.testing_utils as op_testing
    import coremltools.converters.mil.testing_utils as testing
    import coremltools.models.utils as model_utils

    testing._IS_MACOS = True
    model_utils._is_macos = lambda: True
    model_utils._macos_version = lambda: MACOS
    testing.coremltoolsutils._macos_version = lambda: MACOS
    testing.coremltoolsutils._is_macos = lambda: True
    wrapped = _wrap_compare(testing.compare_backend)
    testing.compare_backend = wrapped
    op_testing.compare_backend = wrapped
    ct.models.MLModel.predict = _predict
    ct.models.MLModel.make_state = _make_state
    if config.getoption("--zoo-canary"):
        from zoo.core.mil import kernels

        relu = kernels.KERNELS["relu"]
        kernels.KERNELS["relu"] = lambda x, **kw: relu(x, **kw) + 1.0
        kernels.KERNELS.pop("sigmoid", None)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    keep, drop, seen = [], [], set()
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        backend = params.get("backend")
        unit = params.get("compute_unit")
        if backend is not None and getattr(backend, "backend", "mlprogram") != "mlprogram":
            drop.append(item)
            continue
        if unit is not None and "CPU_ONLY" not in str(unit):
            drop.append(item)
            continue
        if config.getoption("--zoo-subset"):
            key = (
                item.module.__name__ if item.module else "",
                item.cls.__name__ if item.cls else "",
                item.originalname,
            )
            if key in seen:
                drop.append(item)
                continue
            seen.add(key)
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    from zoo.core.mil import MilError, UnsupportedOp

    if call.when == "setup":
        _current.clear()
    outcome = yield
    report = outcome.get_result()
    if call.when == "setup" and report.skipped:
        _record(item, "skipped", str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "")
    if call.when != "call":
        return
    exc = call.excinfo.value if call.excinfo else None
    if report.skipped:
        kind, detail = "skipped", str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    elif exc is None:
        kind, detail = ("passed", "") if _current.get("predicted") else ("nothing-executed", "")
    elif isinstance(exc, UnsupportedOp):
        kind, detail = "unsupported", str(exc)
    elif isinstance(exc, _Unreadable):
        kind, detail = "unreadable", str(exc)
    elif isinstance(exc, MilError):
        kind, detail = "crashed", str(exc)
    elif isinstance(exc, AssertionError) and _current.get("predicted"):
        if "fp16_case" in _current:
            kind = "fp16-below-tolerance" if _current["fp16_case"] else "wrong"
        else:
            kind = "wrong"
        detail = str(exc).splitlines()[0:6]
        detail = " ".join(d.strip() for d in detail)
    else:
        kind, detail = "other", f"{type(exc).__name__}: {exc}"
    _record(item, kind, detail)


def _record(item: Any, kind: str, detail: str) -> None:
    _results.append(
        {
            "id": item.nodeid,
            "module": item.module.__name__.rsplit(".", 2)[-2] + "/" + item.module.__name__.rsplit(".", 1)[-1]
            if item.module
            else "",
            "class": item.cls.__name__ if item.cls else "",
            "outcome": kind,
            "ops": sorted(_current.get("ops", ())),
            "detail": detail[:500],
        }
    )


OUTCOMES = (
    "passed",
    "wrong",
    "crashed",
    "unsupported",
    "fp16-below-tolerance",
    "unreadable",
    "skipped",
    "nothing-executed",
    "other",
)


def summarize(results: list[dict[str, Any]], by: str) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for r in results:
        row = table.setdefault(r[by], dict.fromkeys(OUTCOMES, 0))
        row[r["outcome"]] += 1
    return table


def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    path = config.getoption("--zoo-report")
    if path:
        Path(path).write_text(json.dumps(_results, indent=1))
    totals = dict.fromkeys(OUTCOMES, 0)
    for r in _results:
        totals[r["outcome"]] += 1
    terminalreporter.write_line("zoo conformance: " + ", ".join(f"{v} {k}" for k, v in totals.items() if v))
