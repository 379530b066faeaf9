"""What the agent and the backend note on a game without bumping its version: players, their names and
the channel of its last start arrive at any time, and must never make a transition or a settings change
conflict (GameStore's versioned writes re-read and retry only on real changes)."""

from __future__ import annotations

from chalicelib.dynamodb import CONDITION_FAILED
from chalicelib.games.states import GameState

__all__ = ["GameNotes"]



class GameNotes:
    """GameStore's unversioned writes (the table connection's UpdateItem: Model.update would add
    `version + 1` to every write)."""

    def note_players(self, tenant_id: str, name: str, *, count: int, at: float) -> bool:
        """Record how many players the agent counts, if the game is (still) starting or running and
        `at` is not older than what is recorded; False if not. No version bump: this arrives every
        minute and must never make a transition or a settings change conflict.
        """
        from pynamodb.exceptions import UpdateError

        from chalicelib.games.models import GameRecord

        live = GameRecord.state.is_in(GameState.STARTING.value, GameState.RUNNING.value)
        newer = GameRecord.players_at.does_not_exist() | (GameRecord.players_at <= int(at))
        try:
            # The table connection's UpdateItem: Model.update would add `version + 1` to every write.
            GameRecord._get_connection().update_item(
                tenant_id,
                range_key=name,
                actions=[GameRecord.players.set(count), GameRecord.players_at.set(int(at))],
                condition=GameRecord.name.exists() & live & newer,
            )
        except UpdateError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            return False
        return True

    def note_channel(self, tenant_id: str, name: str, channel_id: str) -> None:
        """Remember where the game was started, for what the backend later says unasked (idle warnings).
        No version bump: it goes with a start that already made its transition."""
        from pynamodb.exceptions import UpdateError

        from chalicelib.games.models import GameRecord

        try:
            GameRecord._get_connection().update_item(
                tenant_id,
                range_key=name,
                actions=[GameRecord.channel_id.set(channel_id)],
                condition=GameRecord.name.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise  # a game deleted meanwhile has nothing to tell

    def note_player_names(self, tenant_id: str, name: str, names: list[str] | None) -> bool:
        """Record who is on the game (None: its protocol gives no names), like `note_players`: only
        while it is starting or running, and without a version bump."""
        from pynamodb.exceptions import UpdateError

        from chalicelib.games.models import GameRecord

        live = GameRecord.state.is_in(GameState.STARTING.value, GameState.RUNNING.value)
        attr = GameRecord.player_names
        action = attr.remove() if names is None else getattr(GameRecord, "player_names").set(names)  # noqa: B009
        try:
            GameRecord._get_connection().update_item(
                tenant_id, range_key=name, actions=[action], condition=GameRecord.name.exists() & live
            )
        except UpdateError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            return False
        return True
