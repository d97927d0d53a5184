"""Plugin discovery: isolation of failures, misspelt hooks, strict mode, dispatch."""

from __future__ import annotations

import pytest

from zoo.core.host.plugins import HookError, PluginHost, PluginLoadError, UnknownModelError

GOOD = """
from zoo.core import hookimpl, ModelSpec, Variant, ComponentSpec
__version__ = "1.2.3"

@hookimpl
def zoo_register_models():
    return [ModelSpec(name="{model}", summary="s", variants={{"fp32": Variant("fp32", precision="fp32")}},
                      default_variant="fp32", components=(ComponentSpec("c"),))]

@hookimpl
def load_reference(model, variant, weights):
    return "{model}-reference"
"""


def test_good_plugin_is_listed_with_version_hooks_and_models(write_plugin):
    host = PluginHost(entry_points=[write_plugin("good_a", GOOD.format(model="alpha"))])
    info = host.plugins["good_a"]
    assert info.ok and info.version == "1.2.3"
    assert info.models == ["alpha"]
    assert info.hooks == ["load_reference", "zoo_register_models"]
    assert host.model("alpha").plugin == "good_a"


def test_hooks_only_reach_the_owning_plugin(write_plugin):
    host = PluginHost(
        entry_points=[
            write_plugin("own_a", GOOD.format(model="alpha")),
            write_plugin("own_b", GOOD.format(model="beta")),
        ]
    )
    assert host.call(host.model("alpha"), "load_reference", variant=None, weights=None) == "alpha-reference"
    assert host.call(host.model("beta"), "load_reference", variant=None, weights=None) == "beta-reference"


def test_import_failure_is_reported_and_others_work(write_plugin):
    bad = write_plugin("bad_import", "raise ImportError('missing dependency xyz')")
    host = PluginHost(entry_points=[bad, write_plugin("good_b", GOOD.format(model="alpha"))])
    assert "missing dependency xyz" in host.plugins["bad_import"].error
    assert host.model("alpha")
    with pytest.raises(PluginLoadError, match="bad_import"):
        PluginHost(strict=True, entry_points=[bad])


def test_misspelt_hook_is_caught_with_a_suggestion(write_plugin):
    source = GOOD.format(model="alpha") + "\n@hookimpl\ndef build_tracables(model, variant, reference):\n    pass\n"
    host = PluginHost(entry_points=[write_plugin("typo", source)])
    error = host.plugins["typo"].error
    assert "build_tracables" in error and "build_traceables" in error
    assert "alpha" not in host.models


def test_wrong_hook_arguments_are_rejected(write_plugin):
    source = GOOD.format(model="alpha") + "\n@hookimpl\ndef convert(model, variant, nonsense):\n    pass\n"
    host = PluginHost(entry_points=[write_plugin("badargs", source)])
    assert "nonsense" in host.plugins["badargs"].error


def test_registration_that_raises_or_duplicates_is_isolated(write_plugin):
    raising = write_plugin(
        "raising",
        "from zoo.core import hookimpl\n@hookimpl\ndef zoo_register_models():\n    raise ValueError('boom')\n",
    )
    dup = write_plugin("dup", GOOD.format(model="alpha"))
    host = PluginHost(entry_points=[raising, write_plugin("orig", GOOD.format(model="alpha")), dup])
    assert "boom" in host.plugins["raising"].error
    errors = [host.plugins[name].error or "" for name in ("dup", "orig")]
    assert sum("already registered by plugin" in e for e in errors) == 1
    assert host.model("alpha")


def test_hook_errors_name_the_plugin(write_plugin):
    source = GOOD.format(model="alpha").replace('return "alpha-reference"', "raise RuntimeError('no weights')")
    host = PluginHost(entry_points=[write_plugin("failing", source)])
    with pytest.raises(HookError, match="failing.*load_reference.*no weights"):
        host.call(host.model("alpha"), "load_reference", variant=None, weights=None)


def test_unknown_model_suggests_a_close_name(write_plugin):
    host = PluginHost(entry_points=[write_plugin("good_c", GOOD.format(model="pocket_tts"))])
    with pytest.raises(UnknownModelError) as err:
        host.model("pocket-tts")
    assert "pocket_tts" in str(err.value) and err.value.suggestion == "pocket_tts"


def _skeleton_plugin(root, name: str, traceables: str) -> object:
    """A package on the skeleton, written to ``root``: ``traceables.py`` holds ``traceables``."""
    import sys

    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from zoo.core import ModelPlugin, ModelSpec, Variant, ComponentSpec\n"
        f"class {name.title().replace('_', '')}(ModelPlugin):\n    package = {name!r}\n"
        "    def models(self):\n"
        "        variants = {'fp32': Variant('fp32', precision='fp32')}\n"
        f"        return [ModelSpec(name={name!r}, summary='s', variants=variants,\n"
        "                          default_variant='fp32', components=(ComponentSpec('c'),))]\n"
        f"plugin = {name.title().replace('_', '')}()\n"
    )
    (package / "reference.py").write_text(
        "import torch  # never imported by the check\ndef load(weights, options): ...\n"
    )
    (package / "traceables.py").write_text(traceables)
    (package / "constants.py").write_text("def export(upstream, options, precision, out_dir): ...\n")
    (package / "loop.py").write_text("from .helpers import run  # re-exported: accepted, arity unknown\n")
    sys.path.insert(0, str(root))
    try:
        return __import__(name).plugin
    finally:
        sys.path.remove(str(root))


def test_a_misnamed_role_function_is_a_load_error_naming_module_and_function(tmp_path):
    """The role modules' functions are declared (skeleton.ROLES protocols) and checked when the
    plugin loads, from their source: no export needs to reach them to find a typo, and nothing
    is imported (the reference module's torch import is never run)."""
    import sys

    host = PluginHost(entry_points=[])
    good = host.register(_skeleton_plugin(tmp_path / "a", "role_ok", "def build(upstream, options, precision): ...\n"))
    assert good.ok and good.models == ["role_ok"]
    typo = host.register(
        _skeleton_plugin(tmp_path / "b", "role_typo", "def biuld(upstream, options, precision): ...\n")
    )
    assert not typo.ok and "role_typo.traceables defines no function build" in typo.error
    assert "build(upstream, options, precision)" in typo.error and "role_typo" not in host.models
    short = host.register(_skeleton_plugin(tmp_path / "c", "role_short", "def build(upstream): ...\n"))
    assert not short.ok and "takes 1 positional parameter(s), not 3" in short.error
    assert not any(
        f"{name}.{role}" in sys.modules
        for name in ("role_ok", "role_typo", "role_short")
        for role in ("reference", "traceables", "loop")
    )
