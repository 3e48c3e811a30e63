"""The process counts of `serve --processes`: bounded, and a bad one names its variable."""

from __future__ import annotations

import pytest

from switchboard.config import Settings
from switchboard.errors import ConfigError


def test_process_counts_are_bounded_and_named() -> None:
    assert Settings.from_env({"SWITCHBOARD_PROCESSES": "4"}).processes == 4
    for env, needle in (
        ({"SWITCHBOARD_PROCESSES": "0"}, "SWITCHBOARD_PROCESSES must be at least 1"),
        ({"SWITCHBOARD_PROCESSES": "65"}, "SWITCHBOARD_PROCESSES must be at most 64"),
        ({"SWITCHBOARD_WORKER_PROCESSES": "1000"}, "SWITCHBOARD_WORKER_PROCESSES must be at most"),
        ({"SWITCHBOARD_PROCESSES": "two"}, "SWITCHBOARD_PROCESSES must be an integer"),
    ):
        with pytest.raises(ConfigError, match=needle):
            Settings.from_env(env)
