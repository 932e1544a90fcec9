"""The CLI's flags are one walk over the option records (`options.option_fields`): every
field that an interface may set is a flag, the shared network fields sit in one panel, and
"avg-rescale" / "avg_rescale" name the same field everywhere."""

from __future__ import annotations

import dataclasses

import pytest

from artconv import registry
from artconv.batch.jobs import Job
from artconv.cli.common import option_parameters
from artconv.options import CoreOptions, field_name, flag, option_fields


@pytest.mark.parametrize("engine", sorted(registry.ENGINES))
def test_every_settable_field_is_a_flag_and_every_core_field_is_in_the_network_panel(engine):
    cls = registry.options_class(engine)
    params = {p.name: p.default for p in option_parameters(cls)}
    settable = [f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    assert list(params) == settable
    core = {f.name for f in dataclasses.fields(CoreOptions)}
    assert "compile" in core  # the field the hand-kept list of network flags once missed
    for name, option in params.items():
        assert option.rich_help_panel == ("Network" if name in core else "Engine options")
        assert flag(name) in option.param_decls[0]


def test_the_walk_describes_each_field_once_for_every_interface():
    by_name = {f.name: f for f in option_fields(registry.options_class("style"))}
    assert by_name["pooling"].kind == "choice" and "avg" in by_name["pooling"].choices
    assert by_name["avg_rescale"].kind == "bool" and by_name["avg_rescale"].core
    assert by_name["seed"].kind == "int" and by_name["seed"].min == 0
    assert by_name["backbone"].optional and by_name["backbone"].kind == "text"
    assert by_name["size"].flag == "--size" and not by_name["size"].core


def test_one_name_conversion_for_presets_manifests_and_flags():
    assert field_name("avg-rescale") == "avg_rescale" == field_name(flag("avg_rescale")[2:])
    opts = CoreOptions.from_dict({"avg-rescale": True, "pooling": "avg"})
    assert opts.avg_rescale
    job = Job.from_dict({"engine": "style", "input": "a.png", "styles": ["b.png"],
                         "options": {"avg-rescale": True, "pooling": "avg"}})
    assert job.options == {"avg_rescale": True, "pooling": "avg"}
