"""Game DNS names in Route 53 (moto, through the broker): /setdns checks the zone, a running game gets
`<game>.<domain>` (TTL 10 s), a stopped one loses it, and a DNS failure never fails a start or stop.

DNS names live in a zone of the tenant's own account, reached through its access role (the customer
role grants Route 53 on the zone it names; no function role has Route 53), so these tenants are
customers; a hosting tenant's /setdns is refused before any AWS call."""

from __future__ import annotations

from typing import Any

from chalicelib.wiring import container
from devstack.discord_user import snowflake
from tests.helpers import Harness
from tests.lifecycle_helpers import create_game, game_row, start_until_running, stop_until_stopped


def _zone(domain: str) -> str:
    answer = container().client("route53").create_hosted_zone(Name=domain, CallerReference=snowflake())
    return str(answer["HostedZone"]["Id"]).rsplit("/", 1)[-1]


def _a_records(zone: str, name: str) -> list[dict[str, Any]]:
    sets = container().client("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [r for r in sets if r["Type"] == "A" and r["Name"].rstrip(".") == name]


def _setdns(harness: Harness, **options: str) -> str:
    payload = harness.user.command("setdns", dict(options))
    status, answer = harness.post(payload)
    assert status == 200, answer
    if answer["type"] == 4:  # refused before any AWS call
        content: str = answer["data"]["content"]
        return content
    harness.run_jobs_for(payload["token"])
    content = harness.calls_for(payload["token"])[-1]["json"]["content"]
    return content


def test_a_running_game_has_a_name_that_goes_away_when_it_stops(harness: Harness, customer_tenant: str) -> None:
    tenant = customer_tenant
    zone = _zone("play.example.net")
    said = _setdns(harness, zone_id=zone, domain="Games.Play.Example.NET.")
    assert said.startswith("✅") and "games.play.example.net" in said
    stored = container().services.tenants.read(tenant)
    assert stored is not None and (stored.dns_zone_id, stored.dns_domain) == (zone, "games.play.example.net")

    create_game(harness, "valheim")
    started = start_until_running(harness, tenant, "valheim")
    game = game_row(tenant, "valheim")
    records = _a_records(zone, "valheim.games.play.example.net")
    assert [(r["TTL"], r["ResourceRecords"]) for r in records] == [(10, [{"Value": game.resources.address}])]
    up = harness.calls_for(started["token"])[-1]["json"]["content"]
    assert up.startswith("🟢 **valheim** is up at `valheim.games.play.example.net`"), up
    _, shown = harness.command("games", game="valheim")
    fields = {f["name"]: f["value"] for f in shown["data"]["embeds"][0]["fields"]}
    assert fields["Address"] == "`valheim.games.play.example.net`"

    changing = _setdns(harness, zone_id=zone, domain="other.play.example.net")
    assert "Stop these games before you change DNS names" in changing

    stop_until_stopped(harness, tenant, "valheim")
    assert _a_records(zone, "valheim.games.play.example.net") == []
    _, shown = harness.command("games", game="valheim")
    assert "Address" not in {f["name"] for f in shown["data"]["embeds"][0]["fields"]}

    assert _setdns(harness).startswith("✅ Game DNS names are off")
    stored = container().services.tenants.read(tenant)
    assert stored is not None and stored.dns_zone_id is None and stored.dns_domain is None


def test_setdns_refuses_what_it_cannot_use_and_changes_nothing(harness: Harness, customer_tenant: str) -> None:
    tenant = customer_tenant
    zone = _zone("refuse.example.org")
    assert "isn't a Route 53 hosted zone id" in _setdns(harness, zone_id="no-such", domain="a.example.org")
    assert "isn't a domain name" in _setdns(harness, zone_id=zone, domain="not a domain")
    assert "Give both" in _setdns(harness, zone_id=zone)
    assert "can't read the hosted zone `ZNOSUCHZONE1`" in _setdns(
        harness, zone_id="ZNOSUCHZONE1", domain="refuse.example.org"
    )
    assert "is not inside the zone" in _setdns(harness, zone_id=zone, domain="elsewhere.example.com")
    stored = container().services.tenants.read(tenant)
    assert stored is not None and stored.dns_zone_id is None


def test_a_dns_failure_never_fails_a_start_or_a_stop(harness: Harness, customer_tenant: str) -> None:
    tenant = customer_tenant
    container().services.tenants.set_dns(tenant, "ZGONEZONE0001", "gone.example.net")  # deleted after /setdns
    create_game(harness, "ark")
    started = start_until_running(harness, tenant, "ark")
    up = harness.calls_for(started["token"])[-1]["json"]["content"]
    assert "its DNS name `ark.gone.example.net` could not be set (NoSuchHostedZone)" in up, up
    stopped = stop_until_stopped(harness, tenant, "ark")
    done = harness.calls_for(stopped["token"])[-1]["json"]["content"]
    assert done.startswith("⚪ **ark** stopped and saved") and "could not be removed" in done


def _put_a(zone: str, name: str, address: str) -> None:
    change = {"Name": name, "Type": "A", "TTL": 300, "ResourceRecords": [{"Value": address}]}
    container().client("route53").change_resource_record_sets(
        HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": change}]}
    )


def test_dns_clean_up_deletes_only_records_gangway_made(harness: Harness, customer_tenant: str) -> None:
    """An admin's own `www` record (or a game's name that someone else set) is never overwritten or
    deleted: gangway marks what it makes with a TXT record and touches only those."""
    from chalicelib.instances import DnsGateway

    zone = _zone("own.example.net")
    assert _setdns(harness, zone_id=zone, domain="own.example.net").startswith("✅")
    stored = container().services.tenants.read(customer_tenant)
    assert stored is not None
    dns = DnsGateway(lambda: container().client("route53"), stored)

    _put_a(zone, "mail.own.example.net", "192.0.2.25")  # the admin's: a game called `mail` must not take it
    taken = dns.publish("mail", "198.51.100.7")
    assert taken.name is None and taken.problem and "did not make" in taken.problem
    assert dns.unpublish("mail").problem is None
    assert [r["ResourceRecords"] for r in _a_records(zone, "mail.own.example.net")] == [
        [{"Value": "192.0.2.25"}]
    ]

    assert dns.publish("rust", "198.51.100.8").name == "rust.own.example.net"
    assert dns.publish("rust", "198.51.100.9").name == "rust.own.example.net"  # its own: updated
    assert [r["ResourceRecords"] for r in _a_records(zone, "rust.own.example.net")] == [
        [{"Value": "198.51.100.9"}]
    ]
    dns.unpublish("rust")
    left = container().client("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert not [r for r in left if r["Name"].startswith("rust.")]


def test_a_hosting_tenant_is_told_dns_names_need_its_own_account(harness: Harness, tenant: str) -> None:
    said = _setdns(harness, zone_id=_zone("hosted.example.net"), domain="hosted.example.net")
    assert said.startswith("⚠️ Game DNS names use a Route 53 zone in your own AWS account"), said
    assert "/setup" in said
    stored = container().services.tenants.read(tenant)
    assert stored is not None and stored.dns_zone_id is None
