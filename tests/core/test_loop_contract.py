"""The loop contract's check: the order of a run's events (the contract as a regular expression over
them), each call's inputs, outputs and states by name, shapes and dtypes against the function — each
rule shown to catch the drift it exists for, on synthetic logs (no torch) and on a real plugin's loop."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from zoo.core import Call, Feed, FrontEnd, LoadStates, LoopContract, Repeat, ResetStates, TensorSpec, Use
from zoo.core.plugin.contract import ContractError, Event, check

FRONT = FrontEnd("bytes", "bytes as ids")


def fn(inputs, outputs, states=()):
    return SimpleNamespace(
        inputs=[TensorSpec(n, shape, dtype, flexible) for n, shape, dtype, flexible in inputs],
        outputs=list(outputs),
        states=[SimpleNamespace(name=s) for s in states],
    )


# a toy streaming model: prefill per chunk, then per frame a step; a decoder overlapping the frames
FUNCTIONS = {
    ("lm", "prefill"): fn([("ids", (1, 4), "int32", {})], ["kv"]),
    ("lm", "step"): fn([("x", (1, 8), "float32", {})], ["y"], states=("cache",)),
    ("dec", "main"): fn([("y", (1, 8, 2), "float32", {2: (1, 4)})], ["audio"]),
}
PREFILL = Call("lm", functions=("prefill",), feeds=(Feed("ids", "text"),), outputs=(Use("kv", "kept"),))
STEP = Call("lm", functions=("step",), feeds=(Feed("x", "output"),), outputs=(Use("y", "to dec"),), states=("cache",))
DEC = Call("dec", feeds=(Feed("y", "output"),), outputs=(Use("audio", "appended"),), overlaps="on a worker")
CONTRACT = LoopContract(
    "toy",
    FRONT,
    (
        LoadStates("lm", "a voice", optional="with a voice"),
        Repeat("chunk", (PREFILL, ResetStates("fresh"), Repeat("frame", (STEP,), until="eos"), DEC), until="all"),
    ),
    "audio",
)


def call(component, function="main", inputs=None, outputs=None, states=()):
    defaults = {
        ("lm", "prefill"): ({"ids": ((1, 4), "int32")}, {"kv": ((1,), "float32")}),
        ("lm", "step"): ({"x": ((1, 8), "float32")}, {"y": ((1, 8), "float32")}),
        ("dec", "main"): ({"y": ((1, 8, 3), "float32")}, {"audio": ((1, 9), "float32")}),
    }[(component, function)]
    states = states or (("cache",) if function == "step" else ())
    return Event("call", component, function, inputs or defaults[0], outputs or defaults[1], states)


P, S, D, R = call("lm", "prefill"), call("lm", "step"), call("dec"), Event("reset")


def test_a_log_in_the_contracts_order_passes_with_overlaps_anywhere_in_their_block():
    for log in (
        [P, R, S, S, D],
        [P, R, S, D, S, D],  # the decoder between frames
        [P, R, S, S, D, D, P, R, S, D],  # two chunks, the first's decoder after its last frame
        [Event("load", "lm"), P, R, S, D],  # the optional load
    ):
        assert check(CONTRACT, log, FUNCTIONS) == [], log


@pytest.mark.parametrize(
    "log, words",
    [
        ([R, P, S, D], "not in the contract's order"),  # reset before the prefill
        ([P, R, D], "not in the contract's order"),  # no frame: a repeat runs at least once
        ([P, R, S], "dec.main never happened"),  # an overlapping call is still required
        ([D, P, R, S], "not in the contract's order"),  # an overlapping call stays inside its block
        ([P, R, S, call("dec"), Event("load", "lm")], "not in the contract's order"),
        ([P, R, S, Event("call", "lm", "other"), D], "no such call"),
    ],
)
def test_an_event_out_of_order_missing_or_unknown_is_named(log, words):
    assert any(words in p for p in check(CONTRACT, log, FUNCTIONS)), check(CONTRACT, log, FUNCTIONS)


def test_names_shapes_and_dtypes_are_checked_against_the_contract_and_the_function():
    bad_name = call("lm", "step", inputs={"z": ((1, 8), "float32")})
    assert any("passed ['z']" in p for p in check(CONTRACT, [P, R, bad_name, D], FUNCTIONS))
    bad_shape = call("lm", "step", inputs={"x": ((1, 9), "float32")})
    assert any("shape [1, 9]" in p for p in check(CONTRACT, [P, R, bad_shape, D], FUNCTIONS))
    flexible_too_long = call("dec", inputs={"y": ((1, 8, 5), "float32")})
    assert any("shape [1, 8, 5]" in p for p in check(CONTRACT, [P, R, S, flexible_too_long], FUNCTIONS))
    int64 = call("lm", "prefill", inputs={"ids": ((1, 4), "int64")})
    assert any("is int64" in p for p in check(CONTRACT, [int64, R, S, D], FUNCTIONS))
    fp16 = call("lm", "step", inputs={"x": ((1, 8), "float16")})  # a float's width is the backend's
    assert check(CONTRACT, [P, R, fp16, D], FUNCTIONS) == []
    extra_out = call("lm", "step", outputs={"y": ((1, 8), "float32"), "w": ((1,), "float32")})
    assert any("returned ['w', 'y']" in p for p in check(CONTRACT, [P, R, extra_out, D], FUNCTIONS))


def test_the_contract_is_checked_against_every_function_it_names_reached_or_not():
    no_state = replace(STEP, states=())
    contract = replace(CONTRACT, steps=(Repeat("chunk", (PREFILL, Repeat("f", (no_state,), until="x")), until="y"),))
    assert any("names states []" in p for p in check(contract, [], FUNCTIONS))
    unknown = replace(PREFILL, functions=("prefil",))
    assert any("no such function" in p for p in check(replace(CONTRACT, steps=(unknown,)), [], FUNCTIONS))
    missing_feed = replace(PREFILL, feeds=())
    assert any("feeds []" in p for p in check(replace(CONTRACT, steps=(missing_feed,)), [], FUNCTIONS))


def test_a_malformed_contract_is_refused_when_built():
    with pytest.raises(ContractError, match="source"):
        Feed("x", "somewhere")
    with pytest.raises(ContractError, match="how one is chosen"):
        Call("lm", feeds=(), outputs=(), functions=("a", "b"))
    with pytest.raises(ContractError, match="twice"):
        Call("lm", feeds=(Feed("x", "loop"), Feed("x", "loop")), outputs=())
    with pytest.raises(ContractError, match="front end"):
        FrontEnd("telepathy", "")


# -- on a real plugin: kokoro's loop and contract ------------------------------------------------------
@pytest.fixture(scope="module")
def kokoro_run():
    pytest.importorskip("torch")
    from zoo.core import RunOptions
    from zoo.core.host.plugins import PluginHost
    from zoo.core.run.contract import run_against_contract

    host = PluginHost()
    return host, run_against_contract(host, "kokoro", "Hello there. How are you?", RunOptions(seed=0))


def test_a_real_contract_altered_is_caught(kokoro_run):
    from zoo.core import RunOptions
    from zoo.core.run.contract import run_against_contract

    host, run = kokoro_run
    assert run.problems == []
    piece = run.contract.steps[0]
    prediction, decoder = piece.steps
    (predictor,) = prediction.steps
    without_decoder = replace(run.contract, steps=(replace(piece, steps=(prediction,)),))
    renamed = replace(
        predictor, feeds=tuple(replace(f, input="ids") if f.input == "input_ids" else f for f in predictor.feeds)
    )
    swapped = replace(run.contract, steps=(replace(piece, steps=(decoder, prediction)),))
    for contract, words in (
        (without_decoder, "not in the contract's order"),
        (replace(run.contract, steps=(replace(piece, steps=(renamed, decoder)),)), "the function takes"),
        (swapped, "not in the contract's order"),
    ):
        again = run_against_contract(host, "kokoro", "Hello there. How are you?", RunOptions(seed=0), contract=contract)
        assert any(words in p for p in again.problems), (words, again.problems)


def test_a_real_loop_altered_is_caught(kokoro_run, monkeypatch):
    """The loop changed without its contract: a second decoder call per piece; no decoder call."""
    from zoo.core import RunOptions
    from zoo.core.run.contract import run_against_contract
    from zoo.plugins.kokoro import loop

    host, _ = kokoro_run
    real = loop.decode

    def twice(runtime, predicted, noise=None):
        real(runtime, predicted, noise)
        return real(runtime, predicted, noise)

    monkeypatch.setattr(loop, "decode", twice)
    run = run_against_contract(host, "kokoro", "Hello there.", RunOptions(seed=0))
    assert any("not in the contract's order" in p for p in run.problems), run.problems
    # and a loop that stops decoding: the contract's required call never happens
    monkeypatch.setattr(loop, "decode", lambda runtime, predicted, noise=None: predicted[0][0, 0, :10])
    run = run_against_contract(host, "kokoro", "Hello there.", RunOptions(seed=0))
    assert any("decoder.main never happened" in p for p in run.problems), run.problems
