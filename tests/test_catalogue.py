"""The game catalogue's schema (issue 17): every entry passes it, names the page that documents its
ports, has a well-formed image reference, Debian packages that exist in bookworm, and sizes gangway
can price; a broken file fails with its file and key named."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from gangway_agent import config as agent_config

from chalicelib.catalogue import GAMES_DIR, CatalogueError, Entry, catalogue, entry, load_entry
from chalicelib.catalogue.load import IMAGE_REFERENCE
from chalicelib.games.cost import estimate
from chalicelib.lifecycle.bootstrap import MAX_USER_DATA, agent_toml, render
from tests.debian_index import IndexUnavailable, package_names

FILES = sorted(GAMES_DIR.glob("*.toml"))
REQUIRED = {
    "minecraft-java",
    "minecraft-bedrock",
    "valheim",
    "terraria",
    "factorio",
    "satisfactory",
    "palworld",
    "counter-strike-2",
    "project-zomboid",
    "7-days-to-die",
    "enshrouded",
    "v-rising",
    "luanti",
    "openarena",
    "teeworlds",
    "openttd",
}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_entry_passes_the_schema(path: Path) -> None:
    game = load_entry(path)
    assert game.id == path.stem
    assert game.ports.source.startswith("https://")
    assert game.connect_port in (*game.ports.tcp, *game.ports.udp)
    resolved = game.resolve(game.defaults())
    assert "{" not in " ".join(resolved.command)
    # Every size has a price: /newgame shows the recommended type's cost per hour.
    assert estimate("us-east-1", game.sizes.x86, game.sizes.disk_gb).on_demand_hourly > 0
    if game.sizes.arm64:
        assert estimate("us-east-1", game.sizes.arm64, game.sizes.disk_gb).on_demand_hourly > 0


def test_the_catalogue_has_the_games_the_issue_names() -> None:
    assert {e.id for e in catalogue()} >= REQUIRED
    assert entry("openarena") is not None and entry("custom") is None


@pytest.mark.parametrize(
    "image", [e.install.image for e in catalogue() if e.install.image], ids=lambda i: str(i).split("/")[-1]
)
def test_container_images_are_full_oci_references(image: str) -> None:
    found = IMAGE_REFERENCE.fullmatch(image)
    assert found and (found.group("tag") or found.group("digest"))


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        ("docker.io/itzg/minecraft-server:java21", True),
        ("ghcr.io/owner/app@sha256:" + "a" * 64, True),
        ("localhost:5000/game:1", True),
        ("docker.io/Upper/case:1", False),
        ("itzg/no-registry:1", False),
        ("docker.io/a//b:1", False),
        ("docker.io/a/b:", False),
        ("docker.io/a/b:" + "t" * 129, False),
    ],
)
def test_the_reference_grammar(reference: str, valid: bool) -> None:
    assert bool(IMAGE_REFERENCE.fullmatch(reference)) is valid


def _index(arch: str) -> frozenset[str]:
    try:
        return package_names(arch, strict=os.environ.get("CI") == "true")
    except IndexUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc}")
        pytest.skip(str(exc))


def test_debian_packages_exist_in_bookworm() -> None:
    apt = [e for e in catalogue() if e.install.method == "apt"]
    assert apt, "the catalogue has games from Debian's archive"
    for arch in ("amd64", "arm64"):
        names = _index(arch)
        assert len(names) > 50_000  # the whole of main, not a truncated file
        wanted = [e for e in apt if arch == "amd64" or e.sizes.arm64]
        missing = {e.id: [p for p in e.install.packages if p not in names] for e in wanted}
        assert not any(missing.values()), f"not in bookworm main/{arch}: {missing}"
    assert "not-a-package-gangway" not in names


GOOD = (GAMES_DIR / "openarena.toml").read_text()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("stop_grace_s = 10", "stop_grace_s = 10\nstop_sginal = 'SIGINT'"), "launch.stop_sginal"),
        (('source = "https://openarena', 'source = "http://openarena'), "ports.source"),
        (('method = "apt"', 'method = "snap"'), "install.method"),
        (('signal = "query"', 'signal = "log"'), "ready.pattern"),
        (('"{map}"]', '"{mapp}"]'), "launch.command"),
        (("default = 12\n", "default = 99\n"), "form[1].default"),
        (('x86 = "t3.small"', 'x86 = "t4g.small"'), "sizes.x86"),
        (("connect_port = 27960", "connect_port = 27961"), "connect_port"),
        (('packages = ["openarena-server"]', "packages = []"), "install.packages"),
    ],
)
def test_a_broken_entry_names_its_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    assert change[0] in GOOD
    path = tmp_path / "openarena.toml"
    path.write_text(GOOD.replace(change[0], change[1], 1))
    with pytest.raises(CatalogueError) as caught:
        load_entry(path)
    assert caught.value.file == "openarena.toml" and caught.value.key == key, str(caught.value)


def test_form_values_are_checked_in_words() -> None:
    game = entry("openarena")
    assert game is not None
    command = game.resolve({"max_players": "16", "server_name": "fraggers"}).command
    assert command[command.index("sv_hostname") + 1] == "fraggers"
    assert command[command.index("sv_maxclients") + 1] == "16"
    with pytest.raises(ValueError, match="Max players must be from 2 to 32"):
        game.check_values({"max_players": "99"})
    with pytest.raises(ValueError, match="one line"):
        game.check_values({"server_name": "a\nb"})
    with pytest.raises(ValueError, match="no setting called"):
        game.check_values({"rcon": "x"})


@pytest.mark.parametrize("game", catalogue(), ids=lambda e: e.id)
def test_every_entry_renders_the_agents_sections_and_fits_ec2s_user_data(game: Entry) -> None:
    from tests.test_instance_bootstrap import BOOT

    boot = replace(
        BOOT,
        tcp_ports=game.ports.tcp,
        udp_ports=game.ports.udp,
        catalogue=game.resolve(game.defaults(), install_version="7"),
    )
    config = tomllib.loads(agent_toml(boot))
    assert config["install"]["method"] == game.install.method and config["install"]["version"] == "7"
    assert config["ready"]["signal"] == game.ready.signal
    assert ("query" in config) is (game.query is not None)
    launch = config["launch"]
    assert launch["stop_signal"] == game.launch.stop_signal and launch["ports"]["udp"] == list(game.ports.udp)
    assert launch["command"] == list(game.resolve(game.defaults()).command)
    assert set(launch["env"]) == {k for k, _ in game.launch.env} | {
        f.env for f in game.form if f.env and f.default
    }
    assert len(render(boot).encode()) <= MAX_USER_DATA
    # The agent reads what the backend writes: its own parser accepts every entry's config.
    agent = agent_config.parse(config)
    assert agent.install is not None and agent.install.method.value == game.install.method
    if game.install.mount is not None:
        assert agent.install.mount == game.install.mount
    assert (agent.query is None) is (game.query is None)


def test_a_custom_game_renders_no_catalogue_section() -> None:
    from tests.test_instance_bootstrap import BOOT

    config = tomllib.loads(agent_toml(BOOT))
    assert not {"install", "query", "ready"} & set(config) and "console_stop" not in config["launch"]
