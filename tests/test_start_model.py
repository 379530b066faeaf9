"""The start-to-playable model (bench/start_model.py, issue 16.5): what each preload mode waits for,
checked on the model's own arithmetic with round inputs (the figures themselves come from `make bench`)."""

from __future__ import annotations

import pytest

from bench.start_model import (
    GP3_BASELINE_MIBS,
    KERNEL_BOOT_S,
    PENDING_TO_RUNNING_S,
    RUN_INSTANCES_API_S,
    model,
)
from chalicelib.lifecycle.preload import INIT_RATE_MIBS


def test_rate_is_warm_when_the_initialisation_ends_or_the_game_is_up_whichever_is_later() -> None:
    out = model(boot_to_ready_s=5.0, game_start_s=2.0, world_gib=10)
    playable = RUN_INSTANCES_API_S + PENDING_TO_RUNNING_S + KERNEL_BOOT_S + 7.0
    modes = out["modes"]
    assert modes["off"] == {"playable_s": pytest.approx(playable, abs=0.05), "warm_s": None}
    assert modes["rate"]["warm_s"] == pytest.approx(RUN_INSTANCES_API_S + 10 * 1024 / INIT_RATE_MIBS, abs=0.05)
    # A slow boot outlasts the initialisation: warm when playable.
    slow = model(boot_to_ready_s=300.0, game_start_s=0.0)["modes"]["rate"]
    assert slow["warm_s"] == slow["playable_s"]


def test_read_starts_the_game_only_after_reading_every_block_and_fsr_has_no_credit_at_once() -> None:
    modes = model(boot_to_ready_s=5.0, game_start_s=0.0, world_gib=10)["modes"]
    read_all = 10 * 1024 / GP3_BASELINE_MIBS
    assert modes["read"]["playable_s"] == pytest.approx(modes["off"]["playable_s"] + read_all, abs=0.1)
    assert modes["read"]["warm_s"] == modes["read"]["playable_s"]
    assert modes["fsr"]["warm_s"] is None
    assert modes["fsr"]["first_credit_after_enable_s"] == 360.0  # 10 credits an hour for 10 GiB
    assert model(5.0, 0.0, world_gib=512)["modes"]["fsr"]["first_credit_after_enable_s"] == 1800.0
