"""examples/automations/: every seed case runs through the simulator to its expected timeline;
its destinations are valid, every send names one of them, and every event of its stream (and
every event it emits) validates against the seed's example catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from switchboard.automation_sim import read_stream, simulate
from switchboard.automations import SCHEDULE_EVENT_TYPE, from_yaml, parse_automation
from switchboard.catalog import Validator, load_catalog_dir
from switchboard.channels.registry import check_destination_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "automations"
SEEDS = ["care-integrations", "clinic-loyalty", "comms-hub", "legal-practice"]


def test_every_seed_with_timed_behaviour_has_an_example() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == SEEDS


@pytest.mark.parametrize("folder", SEEDS)
async def test_example_timeline_is_the_expected_one(folder: str) -> None:
    here = EXAMPLES / folder
    docs = yaml.safe_load((here / "automations.yaml").read_text(encoding="utf-8"))["automations"]
    autos = [parse_automation(from_yaml(d), version=1) for d in docs]
    stream = read_stream((here / "events.jsonl").read_text(encoding="utf-8"))
    sim = await simulate(autos, stream)
    expected = (here / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert sim.lines() == expected
    # the events it was fed and the ones it emitted are valid events of the seed's catalog
    types = {t.name: t for t in load_catalog_dir(ROOT / "catalogs" / folder).types}
    for event in sim.events:
        if event.doc["type"] == SCHEDULE_EVENT_TYPE:
            continue  # the hub's own event, not the seed's
        spec = types[event.doc["type"]]
        problems = Validator(spec.versions[-1].schema).validate(event.doc["data"])
        assert problems == [], (event.doc["id"], problems)
    # every destination is valid for its channel, and every send names one
    dests = yaml.safe_load((here / "destinations.yaml").read_text(encoding="utf-8"))
    names = set()
    for d in dests["destinations"]:
        assert check_destination_config(d["kind"], d["config"]) == [], d["name"]
        names.add(d["name"])
    for auto in autos:
        assert auto.destinations() <= names, auto.name
