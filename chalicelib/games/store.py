"""Game rows of one tenant at a time; conditions become domain errors (lesson L9)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Unpack

from chalicelib.dynamodb import CONDITION_FAILED, DynamoDbClient
from chalicelib.dynamodb.values import required_text
from chalicelib.errors import Conflict, NotFound
from chalicelib.games.game import Game, game_of_record
from chalicelib.games.names import SettingChanges, check_name
from chalicelib.games.notes import GameNotes
from chalicelib.games.row import game_row
from chalicelib.games.states import TRANSITIONAL, GameState, can_move, sources_of

if TYPE_CHECKING:
    from pynamodb.exceptions import UpdateError
    from pynamodb.expressions.update import Action

    from chalicelib.games.models import GameRecord

__all__ = ["GameStore"]

# How often `move` re-reads and retries when only other fields changed: each retry needs another writer
# to have won a race in the few milliseconds between a read and a write.
_MOVE_ATTEMPTS: Final = 8


_Value = str | int | float | bool | list[str] | None


class GameStore(GameNotes):
    """Reads and writes games; every method takes the tenant id explicitly.

    With a `client` (and the games `table`'s name) `all`, `get` and `names` read through the
    botocore-free client (chalicelib/dynamodb), so a cold `/games`, `/status` or autocomplete never
    imports botocore or PynamoDB; writes and every other read stay on PynamoDB, imported on first use.
    """

    def __init__(self, *, client: DynamoDbClient | None = None, table: str = "") -> None:
        self._client = client
        self._table = table

    def all(self, tenant_id: str) -> list[Game]:
        """All of a tenant's games, by name (one Query on the tenant's partition, every page)."""
        if self._client is not None:
            items = self._client.query(
                self._table,
                key_condition="#0 = :0",
                names={"#0": "tenant_id"},
                values={":0": {"S": tenant_id}},
                consistent=True,
            )
            return [game_of_record(game_row(item)) for item in items]
        from chalicelib.games.models import GameRecord

        return [game_of_record(r) for r in GameRecord.query(tenant_id, consistent_read=True)]

    def in_transit(self, *, changed_before: int) -> list[Game]:
        """Every tenant's games in a transitional state that last changed before `changed_before` (the
        reconciliation pass's view): a Query per state on the sparse index, which holds only such games.
        The index is eventually consistent; the rescue it leads to writes conditionally on the row."""
        from chalicelib.games.models import GameRecord

        return [
            game_of_record(r)
            for state in sorted(TRANSITIONAL)
            for r in GameRecord.in_transit_index.query(state.value, GameRecord.updated_at < changed_before)
        ]

    def get(self, tenant_id: str, name: str) -> Game | None:
        """The game, strongly consistent; None if the tenant has none of that name."""
        if self._client is not None:
            key = {"tenant_id": {"S": tenant_id}, "name": {"S": name}}
            item = self._client.get_item(self._table, key, consistent=True)
            return None if item is None else game_of_record(game_row(item))
        from pynamodb.exceptions import DoesNotExist

        from chalicelib.games.models import GameRecord

        try:
            return game_of_record(GameRecord.get(tenant_id, name, consistent_read=True))
        except DoesNotExist:
            return None

    def names(self, tenant_id: str, prefix: str = "", limit: int = 25) -> list[str]:
        """Names starting with `prefix`, for autocomplete (a key-condition query, no scan)."""
        if self._client is not None:
            condition = "#0 = :0 AND begins_with (#1, :1)" if prefix else "#0 = :0"
            names = {"#0": "tenant_id", "#1": "name"} if prefix else {"#0": "tenant_id"}
            values = {":0": {"S": tenant_id}, ":1": {"S": prefix}} if prefix else {":0": {"S": tenant_id}}
            items = self._client.query(
                self._table,
                key_condition=condition,
                names=names,
                values=values,
                consistent=False,
                limit=limit,
                projection=("name",),
            )
            return [required_text(item, "name") for item in items]
        from chalicelib.games.models import GameRecord

        cond = GameRecord.name.startswith(prefix) if prefix else None
        rows = GameRecord.query(tenant_id, cond, limit=limit, attributes_to_get=["name"])
        return [r.name for r in rows]

    def create(
        self,
        tenant_id: str,
        name: str,
        *,
        description: str,
        created_by: str,
        state: GameState = GameState.STOPPED,
        stale_claim_after: float | None = None,
        settings: SettingChanges | None = None,
    ) -> Game:
        """Add a game (stopped, or CREATING while /newgame's workflow makes its security group).

        `settings` are chosen with the name (a catalogue game's entry, size and form values).
        With `stale_claim_after`, a CREATING row untouched for that many seconds is taken over: its
        workflow is long over without finishing or undoing it, and the name must not stay stuck.

        Raises:
            ValidationError: bad name.  Conflict: the tenant already has a game of that name.
        """
        from pynamodb.exceptions import PutError

        from chalicelib.games.models import GameRecord

        now = int(time.time())
        rec = GameRecord(
            tenant_id,
            check_name(name),
            description=description,
            state=state.value,
            in_transit=_transit_key(state),
            created_by=created_by,
            created_at=now,
            updated_at=now,
            **(settings or {}),
        )
        condition = GameRecord.name.does_not_exist()
        if stale_claim_after is not None:
            stuck = GameRecord.updated_at < now - int(stale_claim_after)
            condition |= (GameRecord.state == GameState.CREATING.value) & stuck
        try:
            # No version condition: a new row has none, and a stuck claim's is of no interest.
            rec.save(condition=condition, add_version_condition=stale_claim_after is None)
        except PutError as exc:
            if exc.cause_response_code == CONDITION_FAILED:
                raise Conflict(f"There is already a game called `{name}`.") from exc
            raise
        return game_of_record(rec)

    def transition(
        self, tenant_id: str, name: str, *, to: GameState, expected_version: int, execution: str | None = None
    ) -> Game:
        """Move a game to `to` if it is still at `expected_version` and in a state that may move there.

        One conditional write: of two concurrent callers with the same expected version, exactly one
        wins; the other gets Conflict naming the game's current state. (The REST route's strict
        optimistic write; workflow steps use `move`, which tolerates changes to other fields.)

        Raises:
            NotFound: no such game.  Conflict: the version moved on, or the move is not allowed.
        """
        from pynamodb.exceptions import UpdateError

        try:
            return self._transition_once(tenant_id, name, to, expected_version, execution)
        except UpdateError as exc:
            current = self._current_after_refusal(tenant_id, name, exc)
            raise _cannot_move(current, to) from exc

    def move(self, seen: Game, *, to: GameState, execution: str | None = None) -> Game:
        """Move `seen` to `to`, as long as nothing the move depends on changed since it was read.

        The move depends on the game's state, on which execution owns it and on it being the same game
        (not deleted and made again); a change to any other field meanwhile (a setting edited right
        after /newgame, a wait recorded, a player count) makes the write re-read and retry, so only a
        real conflict fails.

        Raises:
            NotFound: the game is gone.  Conflict: its state or owner moved on.
        """
        from pynamodb.exceptions import UpdateError

        expected = seen.version
        for _attempt in range(_MOVE_ATTEMPTS):
            try:
                return self._transition_once(seen.tenant_id, seen.name, to, expected, execution)
            except UpdateError as exc:
                current = self._current_after_refusal(seen.tenant_id, seen.name, exc)
                if not _same_footing(seen, current) or not can_move(current.state, to):
                    raise _cannot_move(current, to) from exc
                expected = current.version
        raise Conflict(
            f"**{seen.name}** kept changing while gangway tried to make it {to.word}; try again in a moment."
        )

    def _transition_once(
        self, tenant_id: str, name: str, to: GameState, expected_version: int, execution: str | None
    ) -> Game:
        from chalicelib.games.models import GameRecord

        rec = GameRecord(tenant_id, name, version=expected_version)
        allowed = [s.value for s in sources_of(to)]
        actions: list[Action] = [
            GameRecord.state.set(to.value),
            GameRecord.in_transit.set(to.value) if to in TRANSITIONAL else GameRecord.in_transit.remove(),
            GameRecord.updated_at.set(int(time.time())),
        ]
        if execution is not None:
            actions.append(GameRecord.execution.set(execution))
        if to is GameState.STARTING:  # a new run: the last run's player count says nothing about it
            actions += [GameRecord.players.remove(), GameRecord.players_at.remove()]
        rec.update(actions=actions, condition=GameRecord.name.exists() & GameRecord.state.is_in(*allowed))
        return game_of_record(rec)

    def _current_after_refusal(self, tenant_id: str, name: str, exc: UpdateError) -> Game:
        """The row as it is now, after a conditional write was refused (the caller says why).

        Raises:
            NotFound: the row is gone.  `exc` itself: the write failed for another reason.
        """
        if exc.cause_response_code != CONDITION_FAILED:
            raise exc
        current = self.get(tenant_id, name)
        if current is None:
            raise NotFound(f"The game `{name}` does not exist on this server.") from exc
        return current

    # -- the game's resources: what the workflow steps made or removed -----------------------------------

    def launched(
        self,
        tenant_id: str,
        name: str,
        *,
        instance_id: str,
        zone: str,
        editing: bool,
        start_reply: Mapping[str, Any] | None = None,
    ) -> Game:
        """StartGame launched the game's instance (for /editgame: a host without the game).

        `start_reply`: the reply a catalogue game's install progress edits from now on (its agent
        installs as soon as it runs, before the start's last step).
        """
        # A new instance: this run is not playable yet and nobody is on it (`playable`, `players` say so).
        return self._set(
            tenant_id,
            name,
            instance_id=instance_id,
            zone=zone,
            editing=editing or None,
            start_reply=json.dumps(dict(start_reply)) if start_reply else None,
            playable_at=None,
            player_names=None,
        )

    def volume_made(self, tenant_id: str, name: str, volume_id: str) -> Game:
        return self._set(tenant_id, name, volume_id=volume_id)

    def reachable_at(self, tenant_id: str, name: str, address: str | None) -> Game:
        return self._set(tenant_id, name, address=address)

    def snapshot_kept(self, tenant_id: str, name: str, snapshot_id: str | None) -> Game:
        """The game's data is now this complete snapshot (None: it has none)."""
        return self._set(tenant_id, name, snapshot_id=snapshot_id)

    def group_made(self, tenant_id: str, name: str, group_id: str) -> Game:
        return self._set(tenant_id, name, security_group_id=group_id)

    def host_gone(
        self, tenant_id: str, name: str, *, kept_volume: str | None, snapshot_id: str | None = None
    ) -> Game:
        """The instance is gone (stopped, or a start undone): no address, nothing waits on its agent.

        `kept_volume` is a volume that holds data no snapshot has (the next start reuses it); a
        `snapshot_id` is recorded as the game's data in the same write.
        """
        extra: dict[str, _Value] = {} if snapshot_id is None else {"snapshot_id": snapshot_id}
        return self._set(
            tenant_id,
            name,
            instance_id=None,
            volume_id=kept_volume,
            address=None,
            editing=None,
            task_token=None,
            task_wait=None,
            task_trace=None,
            start_reply=None,
            playable_at=None,
            player_names=None,
            **extra,
        )

    # -- who owns the game and what its steps wait for --------------------------------------------------

    def owned_by(self, tenant_id: str, name: str, execution: str) -> Game:
        """The execution (its ARN) that owns the game's current state."""
        return self._set(tenant_id, name, execution=execution)

    def wait(
        self,
        tenant_id: str,
        name: str,
        token: str,
        *,
        waiting_for: Mapping[str, Any] | None = None,
        trace: str | None = None,
    ) -> Game:
        """A step keeps its task token until the agent answers; `waiting_for` says for what when it is
        not the agent's `ready` (lifecycle/start_game.py); `trace` is the step's trace header, which the
        agent's answer continues (the agent itself knows nothing of traces)."""
        task_wait = json.dumps(dict(waiting_for)) if waiting_for is not None else None
        return self._set(tenant_id, name, task_token=token, task_wait=task_wait, task_trace=trace)

    def note_wait(self, tenant_id: str, name: str, waiting_for: Mapping[str, Any]) -> Game:
        """What the kept token waits for, updated (how far a preload's progress was told)."""
        return self._set(tenant_id, name, task_wait=json.dumps(dict(waiting_for)))

    def end_wait(self, tenant_id: str, name: str) -> Game:
        """The wait is over (answered, or the step moved on)."""
        return self._set(tenant_id, name, task_token=None, task_wait=None, task_trace=None)

    def wait_for_save(self, tenant_id: str, name: str, token: str | None) -> Game:
        """The backup's task token while the agent saves (None: the wait is over). Apart from the main
        token: a /stop may run meanwhile and owns that one."""
        return self._set(tenant_id, name, backup_token=token)

    def keep_agent_reply(self, tenant_id: str, name: str, reply: str | None) -> Game:
        """The agent's answer a command polls for (None: taken)."""
        return self._set(tenant_id, name, agent_reply=reply)

    def _set(self, tenant_id: str, name: str, **attrs: _Value) -> Game:
        """Write (or remove, with None) attributes of resources and waits.

        No version condition: these are owned by the running workflow step, and a concurrent change of
        other fields (a setting, the state) must not make this write fail.

        Raises:
            NotFound: no such game.
        """
        from pynamodb.exceptions import UpdateError

        from chalicelib.games.models import GameRecord

        actions: list[Action] = [
            getattr(GameRecord, k).set(v) if v is not None else getattr(GameRecord, k).remove()
            for k, v in attrs.items()
        ]
        actions.append(GameRecord.updated_at.set(int(time.time())))
        rec = self._record_of(tenant_id, name)
        try:
            # Conditional on the row existing: an update of a deleted game would recreate it as a half row.
            rec.update(actions=actions, condition=GameRecord.name.exists(), add_version_condition=False)
        except UpdateError as exc:
            self._current_after_refusal(tenant_id, name, exc)
            raise
        return game_of_record(rec)

    def change(
        self,
        tenant_id: str,
        name: str,
        *,
        expected_version: int | None = None,
        states: frozenset[GameState] | None = None,
        **changes: Unpack[SettingChanges],
    ) -> Game:
        """Change settings of a game, in one conditional write: only while it is at `expected_version`
        (a read-modify-write such as a port list) and in one of `states`, if given.

        Raises:
            NotFound: no such game.  Conflict: the game changed since it was read, or is in another state.
        """
        from pynamodb.exceptions import DoesNotExist, UpdateError

        from chalicelib.games.models import GameRecord

        try:
            rec = GameRecord.get(tenant_id, name, consistent_read=True)
        except DoesNotExist as exc:
            raise NotFound(f"The game `{name}` does not exist on this server.") from exc
        if expected_version is not None:
            rec.version = expected_version
        actions: list[Action] = [
            getattr(GameRecord, k).remove() if v is None else getattr(GameRecord, k).set(v)
            for k, v in changes.items()
        ]
        actions.append(GameRecord.updated_at.set(int(time.time())))
        condition = GameRecord.name.exists()
        if states is not None:
            condition &= GameRecord.state.is_in(*(s.value for s in states))
        try:
            rec.update(
                actions=actions, condition=condition, add_version_condition=expected_version is not None
            )
        except UpdateError as exc:
            current = self._current_after_refusal(tenant_id, name, exc)
            raise Conflict(
                f"**{name}** changed meanwhile (it is {current.state.word} now); nothing was changed. "
                "Try again."
            ) from exc
        return game_of_record(rec)

    def claim_backup(self, tenant_id: str, name: str, *, execution: str, stale_after: float) -> Game:
        """Mark a running game as backed up by `execution`: one conditional write, so of two /backupnow
        at once exactly one wins. A claim older than `stale_after` seconds is taken over (its workflow
        died without releasing it); the same execution claiming again is a no-op (retries).

        Raises:
            NotFound: no such game.  Conflict: the game is not running, or another backup is under way.
        """
        from pynamodb.exceptions import UpdateError

        from chalicelib.games.models import GameRecord

        now = int(time.time())
        rec = self._record_of(tenant_id, name)
        free = (
            GameRecord.backup.does_not_exist()
            | (GameRecord.backup == execution)
            | (GameRecord.backup_since < now - stale_after)
        )
        try:
            rec.update(
                actions=[
                    GameRecord.backup.set(execution),
                    GameRecord.backup_since.set(now),
                    GameRecord.updated_at.set(now),
                ],
                condition=GameRecord.name.exists() & (GameRecord.state == GameState.RUNNING.value) & free,
                add_version_condition=False,
            )
        except UpdateError as exc:
            current = self._current_after_refusal(tenant_id, name, exc)
            if current.state is not GameState.RUNNING:
                raise Conflict(
                    f"**{name}** is {current.state.word}; only a running game can be backed up."
                ) from exc
            raise Conflict(
                f"A backup of **{name}** is already under way (since "
                f"<t:{int(current.wait.backup_since or now)}:R>); you'll see its result in its reply."
            ) from exc
        return game_of_record(rec)

    def release_backup(self, tenant_id: str, name: str, *, execution: str) -> None:
        """Clear the backup claim of `execution` (and its wait token); someone else's claim is left alone."""
        from pynamodb.exceptions import DoesNotExist, UpdateError

        from chalicelib.games.models import GameRecord

        try:
            rec = GameRecord.get(tenant_id, name, consistent_read=True)
        except DoesNotExist:
            return
        try:
            rec.update(
                actions=[
                    GameRecord.backup.remove(),
                    GameRecord.backup_since.remove(),
                    GameRecord.backup_token.remove(),
                    GameRecord.updated_at.set(int(time.time())),
                ],
                condition=GameRecord.backup == execution,
                add_version_condition=False,
            )
        except UpdateError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise

    def delete(self, tenant_id: str, name: str, *, state: GameState) -> bool:
        """Delete the game's row if it is (still) in `state`; False if it was already gone.

        Raises:
            Conflict: the game is in another state (or changed since it was read).
        """
        from pynamodb.exceptions import DeleteError, DoesNotExist

        from chalicelib.games.models import GameRecord

        try:
            rec = GameRecord.get(tenant_id, name, consistent_read=True)
        except DoesNotExist:
            return False
        try:
            rec.delete(condition=GameRecord.state == state.value)
        except DeleteError as exc:
            if exc.cause_response_code != CONDITION_FAILED:
                raise
            raise Conflict(f"**{name}** is no longer {state.word}; it was not deleted.") from exc
        return True

    def start_told(
        self, tenant_id: str, name: str, reply: Mapping[str, Any] | None, *, restart: bool = False
    ) -> Game:
        """The reply install progress and `playable` edit (the /start's, or /updategame's), with how far
        it was told; `restart`: the game is about to be reinstalled and restarted, so not playable."""
        again: dict[str, _Value] = {"playable_at": None, "player_names": None} if restart else {}
        return self._set(tenant_id, name, start_reply=json.dumps(dict(reply)) if reply else None, **again)

    def note_playable(self, tenant_id: str, name: str, at: float) -> Game:
        """The agent said the game is playable (its readiness signal holds)."""
        return self._set(tenant_id, name, playable_at=int(at))

    def _record_of(self, tenant_id: str, name: str) -> GameRecord:
        from pynamodb.exceptions import DoesNotExist

        from chalicelib.games.models import GameRecord

        try:
            return GameRecord.get(tenant_id, name, consistent_read=True)
        except DoesNotExist as exc:
            raise NotFound(f"The game `{name}` does not exist on this server.") from exc


def _same_footing(seen: Game, current: Game) -> bool:
    """Whether `current` is the game `seen` was, in the same state, owned by the same execution."""
    return (
        current.state is seen.state
        and current.wait.execution == seen.wait.execution
        and current.created_at == seen.created_at
    )


def _cannot_move(current: Game, to: GameState) -> Conflict:
    return Conflict(
        f"**{current.name}** is {current.state.word}; it can't become {to.word} from there right now."
    )


def _transit_key(state: GameState) -> str | None:
    """The sparse index's key of a game in `state`: the state while transitional, else none."""
    return state.value if state in TRANSITIONAL else None
