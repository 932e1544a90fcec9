"""One step record for every engine (`artconv.engine.Step`), one way to and from plain
values, one relay for drivers above an engine."""

from __future__ import annotations

import json

import torch

import artconv.deepdream.engine as dream_engine
import artconv.features.engine as features_engine
import artconv.style.engine as style_engine
from artconv.engine import Display, Relay, Step


def a_step(**changes):
    fields = dict(engine="style", stage=2, stages=3, step=4, steps=5, done=9, total=15,
                  figures={"loss": 1.5, "style": 0.25}, size=(32, 48), frame=0,
                  per_image=(0.5, 1.0))
    return Step(**{**fields, **changes})


def test_a_step_survives_json_and_keeps_its_picture_maker():
    step = a_step(_image=lambda: torch.zeros(1, 3, 32, 48))
    plain = json.loads(json.dumps(step.to_dict()))  # what crosses to a page or a process
    back = Step.from_dict(plain, image=lambda: torch.ones(1, 3, 2, 2))
    assert back == step and back.size == (32, 48) and back.per_image == (0.5, 1.0)
    assert back.image.shape == (1, 3, 2, 2) and Step.from_dict(plain).image is None


def test_the_engines_former_step_names_are_the_one_step():
    assert style_engine.StepInfo is dream_engine.StepInfo is dream_engine.DreamStep is Step
    assert style_engine.Display is features_engine.StepListener is Display
    step = a_step(engine="dream", figures={"objective": 2.0})
    assert (step.scale, step.scales, step.total_step) == (1, 3, 9)
    assert (step.octave, step.octaves, step.objective) == (2, 3, 2.0)


def test_a_relay_counts_over_the_whole_job_and_remembers_a_stop():
    seen, shown = [], []
    relay = Relay(lambda s: seen.append(s) or len(seen) < 3, shown.append, total=20)
    relay.frame, relay.offset = 2, 10
    assert relay(a_step(done=1)) and relay(a_step(done=2))
    assert [(s.frame, s.done, s.total) for s in seen] == [(2, 11, 20), (2, 12, 20)]
    assert shown == seen and not relay.stopped
    assert relay(a_step(done=3)) is False and relay.stopped
    plain = Relay(None)  # no frame, no total: the step passes unchanged
    assert plain(a_step()) and not plain.stopped
