"""The game cost estimate: pure arithmetic over the dated price table, and what /games shows."""

from __future__ import annotations

import json

import pytest

from chalicelib.games.cost import PRICES, NoPrice, estimate, price_table
from chalicelib.tenancy.plans import _SIZES
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game

OFFERED = [
    f"{family}.{size}"
    for family, sizes in {
        "t3": ("small", "medium", "large", "xlarge"),
        "m6i": ("large", "xlarge", "2xlarge"),
        "c6i": ("large", "xlarge", "2xlarge"),
    }.items()
    for size in sizes
]


def test_the_table_names_its_source_and_date_and_prices_every_offered_type() -> None:
    table = json.loads(PRICES.read_text())
    assert table["date"] and "aws.amazon.com" in table["source"] and table["as_of"]
    for region in ("us-east-1", "eu-west-1"):
        prices = table["regions"][region]
        assert set(OFFERED) <= set(prices["on_demand_hourly"]), region
        assert all(0 < p < 1 for p in prices["on_demand_hourly"].values())
        assert all(t.partition(".")[2] in _SIZES for t in prices["on_demand_hourly"])
    assert 0 < table["spot"]["savings_low"] < table["spot"]["savings_high"] < 1


def test_an_hour_played_is_instance_disk_and_address_and_a_month_idle_is_the_snapshot() -> None:
    table = {
        "as_of": "test prices",
        "spot": {"savings_low": 0.5, "savings_high": 0.75},
        "regions": {
            "r-1": {
                "on_demand_hourly": {"t3.medium": 0.04},
                "gp3_gb_month": 0.073,
                "snapshot_gb_month": 0.05,
                "public_ipv4_hourly": 0.005,
            }
        },
    }
    e = estimate("r-1", "t3.medium", 10, table)
    # 10 GB * $0.073 over 730 h = $0.001/h; plus $0.005/h for the address.
    assert e.on_demand_hourly == pytest.approx(0.046)
    assert e.spot_hourly == pytest.approx((0.016, 0.026))
    assert e.idle_monthly == pytest.approx(0.5)
    assert "~$0.016 to $0.026/h on Spot (or ~$0.046/h on-demand)" in e.lines(spot=True)[0]
    assert e.lines(spot=False)[0].startswith("Played: ~$0.046/h on-demand")
    with pytest.raises(NoPrice, match="region r-2"):
        estimate("r-2", "t3.medium", 10, table)
    with pytest.raises(NoPrice, match=r"t3\.nano in r-1"):
        estimate("r-1", "t3.nano", 10, table)


def test_the_shipped_table_gives_sensible_numbers() -> None:
    e = estimate("us-east-1", "t3.medium", 12, price_table())
    assert 0.04 < e.on_demand_hourly < 0.06 and e.spot_hourly[0] < e.spot_hourly[1] < e.on_demand_hourly
    assert e.idle_monthly == pytest.approx(0.6)


def test_games_shows_the_estimate(harness: Harness, tenant: str) -> None:
    create_game(harness, "satisfactory")
    _, shown = harness.command("games", game="satisfactory")
    fields = {f["name"]: f["value"] for f in shown["data"]["embeds"][0]["fields"]}
    cost = fields["Cost estimate"]
    assert "/h on-demand" in cost and "/month" in cost and "`t3.medium`, 12 GB" in cost
    assert "list prices in `us-east-1`" in cost
