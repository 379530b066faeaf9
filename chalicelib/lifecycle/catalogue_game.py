"""A catalogue game's run (issue 17): its entry resolved for the agent's config, and the agent events
that follow a start — install progress, `playable`, and who is on it — told in the /start reply.

The start workflow ends at the agent's `ready` (the host is up); a catalogue game then installs (first
start, or a new version) and starts, and is playable only when its readiness signal holds. So the
/start reply is kept on the game (`start_reply`) and edited from these events: until `playable` it
says the game is installing or starting, never that it is ready to join.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from chalicelib.agents.events import AGENT_EVENTS, AgentEvent
from chalicelib.catalogue import Entry, Resolved, entry
from chalicelib.games import Game, GameState
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.workflows import StepFailed

__all__ = [
    "catalogue_entry",
    "connect_line",
    "on_install_progress",
    "on_playable",
    "on_player_names",
    "resolved",
    "started_text",
]

log = logging.getLogger(__name__)

# Install progress edits the reply on a new phase, every 10 percent, or every 20 s: not every report.
_TELL_STEP_PERCENT: Final = 10.0
_TELL_EVERY_S: Final = 20.0
_PHASES: Final = {
    "download": "downloading",
    "install": "installing",
    "done": "installed; starting the game",
    "skipped": "already installed; starting the game",
}


def catalogue_entry(game: Game) -> Entry | None:
    """The game's catalogue entry (None: a custom game, or an entry no longer in the catalogue)."""
    return entry(game.settings.catalogue_id) if game.settings.catalogue_id else None


def resolved(game: Game) -> Resolved | None:
    """What the agent's config says for a catalogue game (None: a custom game).

    Raises:
        StepFailed: its entry is gone from the catalogue, or its stored values break the entry's limits.
    """
    if not game.settings.catalogue_id:
        return None
    found = catalogue_entry(game)
    if found is None:
        raise StepFailed(
            "gangway.NoCatalogueEntry",
            f"its game type `{game.settings.catalogue_id}` is no longer in gangway's catalogue",
        )
    try:
        return found.resolve(dict(game.settings.options), game.settings.install_version)
    except ValueError as exc:
        raise StepFailed("gangway.BadGameOptions", f"{exc}; change it with /gameoption") from exc


def connect_line(game: Game, host: str | None) -> str | None:
    """What players type to join (`openarena +connect host:27960`), for a catalogue game with a host."""
    found = catalogue_entry(game)
    return found.connect_string(host) if found is not None and host else None


def started_text(lc: Lifecycle, game: Game, where: str, reply: Any) -> str | None:
    """The /start reply when the host is up: for a catalogue game, that it now installs and starts (the
    reply is kept for the events that follow); None for a custom game."""
    found = catalogue_entry(game)
    if found is None:
        return None
    game = lc.games.start_told(game.tenant_id, game.name, {"reply": reply} if reply else None)
    if game.playable_at is not None:  # `playable` came before this step ran (a quick second start)
        return _playable_text(game)
    return (
        f"⏳ **{game.name}**'s server is up at {where}; now installing and starting {found.name} "
        "(the first start downloads it; later ones use what its disk kept). Not ready to join yet: this "
        "message says when it is playable."
    )


def _started(lc: Lifecycle, event: AgentEvent) -> tuple[Game, dict[str, Any]] | None:
    """The running catalogue game the event is about and its kept /start reply, or None."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state not in (GameState.STARTING, GameState.RUNNING) or not game.wait.start_reply:
        return None
    try:
        kept = json.loads(game.wait.start_reply)
    except ValueError:
        return None
    return (game, kept) if isinstance(kept, dict) else None


@AGENT_EVENTS.on("install.progress")
def on_install_progress(event: AgentEvent, lc: Lifecycle) -> None:
    """Say how far the install is, in words, in the /start reply (throttled)."""
    found = _started(lc, event)
    if found is None:
        return
    game, kept = found
    phase = str(event.body.get("phase", ""))
    percent = event.body.get("percent")
    name = (catalogue_entry(game) or game).name
    if phase == "failed":
        message = str(event.body.get("message") or "the agent gave no reason")
        lc.tell(
            kept,
            f"❌ **{game.name}**: installing {name} failed: {message}. The server keeps running without "
            f"the game: run `/updategame game:{game.name}` to try the install again, or `/stop` it.",
        )
        return
    if phase not in _PHASES:
        return
    now = time.time()
    told_phase, told, at = kept.get("phase"), float(kept.get("told", -1.0)), float(kept.get("at", 0.0))
    number = float(percent) if isinstance(percent, int | float) and not isinstance(percent, bool) else None
    fresh = phase != told_phase or (number is not None and number >= told + _TELL_STEP_PERCENT)
    if not fresh and now - at < _TELL_EVERY_S:
        return
    kept |= {"phase": phase, "told": number if number is not None else -1.0, "at": now}
    lc.games.start_told(game.tenant_id, game.name, kept)
    how_far = f"… {int(number)} %" if number is not None and phase in ("download", "install") else "…"
    version = str(event.body.get("version") or "")
    lc.tell(
        kept,
        f"⏳ **{game.name}**: {_PHASES[phase]} {name}"
        + (f" (version {version})" if version else "")
        + how_far
        + " Not ready to join yet: this message says when it is playable.",
    )


@AGENT_EVENTS.on("playable")
def on_playable(event: AgentEvent, lc: Lifecycle) -> None:
    """The game's readiness signal holds: record it, and say where to join."""
    game = lc.games.get(event.tenant_id, event.game)
    if game is None or game.state not in (GameState.STARTING, GameState.RUNNING):
        return
    game = lc.games.note_playable(event.tenant_id, event.game, time.time())
    found = _started(lc, event)
    if found is None:
        return
    lc.tell(found[1], _playable_text(game))


def _playable_text(game: Game) -> str:
    line = connect_line(game, game.resources.address)
    join = f" Join with `{line}`." if line else ""
    return (
        f"🟢 **{game.name}** is playable.{join} `/help game:{game.name}` says how to join; use `/addip` "
        "if you can't connect."
    )


@AGENT_EVENTS.on("players")
def on_player_names(event: AgentEvent, lc: Lifecycle) -> None:
    """Who is on the game, where its query protocol gives names (`names`; null: it gives none)."""
    if "names" not in event.body:
        return
    names = event.body["names"]
    listed = [str(n) for n in names] if isinstance(names, list) else None
    if not lc.games.note_player_names(event.tenant_id, event.game, listed):
        log.info("%s/%s: player names for a game that is not running", event.tenant_id, event.game)
