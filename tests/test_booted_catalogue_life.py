"""A catalogue game's life through the local stack on booted instances (issue 17's "done when"): a signed
`/newgame` picks OpenArena (Debian's `openarena-server`, players by Quake 3's `getstatus`), its CreateGame
workflow runs, and `/start` launches an instance that boots here as Debian 12 (as in
test_booted_lifecycle.py, through tests/booted_helpers.py). The instance has no internet: each booted
root's only apt source is a local repository of Debian's .debs served over HTTP from this machine
(devstack/instance/aptrepo.py), so apt fetches them into its cache as from a mirror.

The agent installs the server and the /start reply follows the install, saying playable only once the
real server answers its query; a real Quake 3 client (devstack/quake3_client.py) joins through the
instance's veth after its address was let in with /addip, and /games names the player. The client
leaves; nobody plays, so the agent's idle shutdown (short thresholds set in the settings, as an operator
would) stops the game through StopGame with a snapshot. The second /start boots from it: the install is
not downloaded again (the packages kept on the data disk) and what the first life wrote is there. Two
boots for the module; the times measured go to $GANGWAY_BENCH_OUT for `make bench` (bench/catalogue.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from chalicelib.games import GameState
from chalicelib.lifecycle.bootstrap import GAME_USER, MOUNTPOINT
from devstack.aws import Emulator
from devstack.discord_api import DiscordStandIn
from devstack.discord_user import Who
from devstack.instance.aptrepo import REPO_PORT, build_repo, serve, use_served
from devstack.instance.boot import BootedInstance
from devstack.instance.rootfs import build_rootfs
from devstack.quake3_client import Quake3Client, Quake3Refused
from tests.booted_helpers import (
    Life,
    booted_stack,
    channel,
    deploy,
    member_lets_in,
    members,
    on_disk,
    stopped_with_snapshot,
    wait,
)
from tests.lifecycle_helpers import game_row, pump_steps

GAME: Final = "arena"
ENTRY: Final = "openarena"
PACKAGES: Final = ("openarena-server",)
PORT: Final = 27960
MODAL: Final = 9
PLAYER: Final = "ana"
# What the first life leaves in the game's folder on the data disk; the second finds it.
WORLD: Final = f"{MOUNTPOINT}/game/world-note.txt"
TIMES: dict[str, float] = {}
FIRST_LIFE: list[str] = []  # the files in the game's folder when the first life's snapshot was taken
# getstatus from inside the instance (its loopback: the game's port is filtered for strangers): the
# statusResponse's first line, or nothing.
GETSTATUS: Final = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
try:
    s.sendto(b"\\xff\\xff\\xff\\xffgetstatus probe\\n", ("127.0.0.1", {PORT}))
    print(s.recv(65507).split(b"\\n", 1)[0].decode("latin-1"))
except OSError:
    pass
"""


@pytest.fixture(scope="module")
def life(
    emulator: Emulator, standin: DiscordStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Life]:
    try:
        repo = build_repo(PACKAGES, build_rootfs())
    except RuntimeError as exc:  # this machine cannot reach Debian's archive
        pytest.fail(f"cannot build the local apt repository: {exc}")
    # Served over HTTP, as a mirror is: apt keeps the .debs it fetched in its cache (on the data disk).
    with serve(repo) as port, booted_stack(
        emulator, standin, tmp_path_factory, GAME, prepare_root=use_served, forward_ports={REPO_PORT: port}
    ) as booted:
        yield booted
    out = os.environ.get("GANGWAY_BENCH_OUT")
    if out:
        Path(out).write_text(json.dumps(TIMES))


def _edits(life: Life, token: str) -> list[str]:
    return [str((c.get("json") or {}).get("content", "")) for c in life.harness.calls_for(token)]


def _answers(vm: BootedInstance) -> bool:
    """The real server answers getstatus now."""
    done = vm.exec(["python3", "-c", GETSTATUS], check=False, timeout=20)
    return done.stdout.startswith("\xff\xff\xff\xffstatusResponse")


def _start_until_playable(life: Life, timed: str) -> tuple[BootedInstance, list[str]]:
    """/start, its workflow until RUNNING, then the reply's edits until the one saying playable, which
    must come when the server answers its query and after every edit saying it is not ready; the edits.
    The seconds from /start to that edit go in TIMES[timed]."""
    h, tenant = life.harness, life.tenant
    began = time.monotonic()
    payload, answer = h.command("start", game=GAME)
    assert answer["data"]["content"] == f"⏳ Starting **{GAME}**…"
    try:
        pump_steps(lambda: game_row(tenant, GAME).state in (GameState.RUNNING, GameState.STOPPED), 420)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{life.console()}") from None
    assert game_row(tenant, GAME).state is GameState.RUNNING, life.console()
    vm = life.vm()
    deadline = time.monotonic() + 600
    while True:
        edits = _edits(life, payload["token"])
        playable = [i for i, text in enumerate(edits) if text.startswith(f"🟢 **{GAME}** is playable.")]
        if playable:
            # The server answers at the moment the reply says so (the agent said playable on its answer).
            assert _answers(vm), f"playable said, but the server does not answer: {edits}; {life.console()}"
            TIMES[timed] = round(time.monotonic() - began, 1)
            break
        assert not any("failed" in text for text in edits), edits
        assert time.monotonic() < deadline, f"never playable: {edits}; {life.console()}"
        time.sleep(0.5)
    before = edits[: playable[0]]
    up = next(i for i, text in enumerate(before) if text.startswith(f"⏳ **{GAME}**'s server is up at"))
    assert all("Not ready to join yet" in text for text in before[up:]), edits  # installing, starting
    assert not any(text.startswith("🟢") for text in before), edits  # nor a custom game's "🟢 is up at"
    assert edits[playable[0]].startswith(f"🟢 **{GAME}** is playable. Join with `openarena +connect "), edits
    return vm, edits


def test_newgame_from_the_catalogue_then_start_installs_and_says_playable_once_the_server_answers(
    life: Life,
) -> None:
    h, tenant = life.harness, life.tenant
    _, form = h.post(h.user.command("newgame", {"name": GAME, "game_type": ENTRY}))
    assert form["type"] == MODAL and form["data"]["custom_id"] == f"games:create:{ENTRY}", form
    status, answer = h.post(h.user.modal_submit(f"games:create:{ENTRY}", {"name": GAME, "description": "Frags"}))
    assert status == 200 and answer["data"]["content"].startswith(f"⏳ Creating **{GAME}**: OpenArena"), answer
    pump_steps(lambda: game_row(tenant, GAME).state is GameState.STOPPED)
    # Short idle thresholds, as an operator sets them for the stage: a count every 2 s, a minute's grace
    # after the game starts (the player joins within it), then stopped 15 s after the last one left.
    saved = deploy(idle_check_s=2, idle_grace_s=60, idle_warn_s=5, idle_stop_s=15)
    try:
        vm, edits = _start_until_playable(life, "first_start_s")
    finally:
        deploy(saved)  # the launch rendered them; what follows runs on the module's settings
    # The install showed in the reply before playable, with apt's own percents (the download of a
    # local repository is over before the reply is kept for the events that follow).
    assert any(f"⏳ **{GAME}**: installing OpenArena (version 1)… " in text for text in edits), edits
    assert any(f"⏳ **{GAME}**: installed; starting the game OpenArena" in text for text in edits), edits
    marker = vm.exec(["cat", f"{MOUNTPOINT}/.gangway/install.json"]).stdout
    assert '"version": "1"' in marker and '"method": "apt"' in marker, marker
    # The server runs as the game's user under the game's unit (Debian's own service stays off).
    pid = vm.exec(["systemctl", "show", "gangway-game", "-p", "MainPID", "--value"]).stdout.strip()
    assert "ioq3ded" in vm.exec(["cat", f"/proc/{pid}/comm"]).stdout, life.console()
    uid = vm.exec(["id", "-u", GAME_USER]).stdout.strip()
    proc = vm.exec(["cat", f"/proc/{pid}/status"]).stdout
    assert any(line.split()[1:2] == [uid] for line in proc.splitlines() if line.startswith("Uid:")), proc
    assert vm.exec(["systemctl", "is-active", "openarena-server"], check=False).stdout.strip() != "active"
    vm.exec(["sh", "-c", f"echo 'first life' > {WORLD} && chown {GAME_USER}: {WORLD}"])


def _players_field(life: Life, member: Who) -> str:
    """The Players field of `/games game:` as a member sees it."""
    _, details = life.harness.command("games", who=member, game=GAME)
    fields = {f["name"]: str(f["value"]) for f in details["data"]["embeds"][0]["fields"]}
    return fields.get("Players", "")


def test_a_real_client_let_in_plays_and_games_names_them_then_leaving_stops_the_game(
    life: Life, tmp_path: Path
) -> None:
    vm = life.vm()
    host = vm.net.host_ip
    # Strangers are filtered: this machine is no member yet.
    with pytest.raises(Quake3Refused, match="did not answer"), Quake3Client(vm.net.guest_ip, PORT, "stranger",
                                                                             timeout=3):
        pass
    member_lets_in(life, host)
    wait("this machine in the nft set", lambda: host in members(vm), life)
    told = len(channel(life))
    member = life.members[host]
    with Quake3Client(vm.net.guest_ip, PORT, PLAYER):
        wait("the player named in /games", lambda: PLAYER in _players_field(life, member), life, timeout=60)
        assert _players_field(life, member).startswith("1 player"), _players_field(life, member)
        _, ip = life.harness.command("ip", who=member)
        assert f"playing: {PLAYER}" in ip["data"]["embeds"][0]["description"], ip
    # Nobody plays now: warned, then stopped by itself through StopGame, saved with a snapshot.
    wait("the game empty in /games", lambda: PLAYER not in _players_field(life, member), life, timeout=60)
    snap = stopped_with_snapshot(life)
    heard = channel(life)[told:]
    assert heard[-1] == f"⚪ **{GAME}** stopped and saved (snapshot `{snap}`) after nobody played.", heard
    instance = next(i for i, p in life.launches.instances.items() if p.vm is vm)
    powered = life.launches.instances[instance]
    life.launches.wait_for("the container to power off", lambda: powered.off_at is not None, timeout=120)
    assert powered.clean, life.console()
    image = life.launches.snapshots[snap]
    assert on_disk(image, "/game/world-note.txt") == "first life\n"
    assert '"method": "apt"' in on_disk(image, "/.gangway/install.json")
    # apt's cache, on the data disk: the .debs it fetched (from the served repository, as from a mirror).
    listed = subprocess.run(["debugfs", "-R", "ls -p /.gangway/apt-archives", str(image)],
                            capture_output=True, text=True, check=False, timeout=30).stdout
    assert "/openarena-server_" in listed and "/ioquake3-server_" in listed, listed
    # The game's folder as the snapshot holds it: what the test wrote, and what the server wrote there
    # (its home: the game's folder, gameunit.py).
    dump = tmp_path / "game"
    dump.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump /game {dump}", str(image)], capture_output=True, check=True,
                   timeout=60)
    FIRST_LIFE.extend(str(f.relative_to(dump / "game")) for f in (dump / "game").rglob("*") if f.is_file())
    print("\nthe game's folder after the first life:", sorted(FIRST_LIFE))
    assert "world-note.txt" in FIRST_LIFE and any(f.startswith(".openarena/") for f in FIRST_LIFE), FIRST_LIFE


def test_the_second_start_from_the_snapshot_installs_from_the_kept_packages_and_the_world_is_there(life: Life) -> None:
    assert "first_start_s" in TIMES, "the first test installs and starts the game"
    vm, edits = _start_until_playable(life, "second_start_s")
    # The marker says version 1 is installed, but this root disk is new: apt installs again from the
    # .debs kept on the data disk, and the reply never says it downloads.
    assert any(f"⏳ **{GAME}**: installing OpenArena (version 1)… " in text for text in edits), edits
    assert not any("downloading" in text for text in edits), edits
    assert vm.exec(["cat", WORLD]).stdout == "first life\n"
    there = vm.exec(["find", f"{MOUNTPOINT}/game", "-type", "f", "-printf", "%P\\n"]).stdout.split("\n")
    assert set(FIRST_LIFE) <= set(there), (FIRST_LIFE, there)
    print(f"\nOpenArena through the stack: first start {TIMES['first_start_s']:.1f} s to playable "
          f"(install included), second start {TIMES['second_start_s']:.1f} s")
