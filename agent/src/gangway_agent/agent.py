"""The agent core: one loop that answers requests and runs the periodic duties.

Requests are handled one at a time, in arrival order, on the loop thread (the MQTT callback only
queues them). Periodic duties (idle check, heartbeat, firewall reconcile, sshd health) are due by
the injected clock, so tests move time by hand and call ``tick()``. Long work (preload) and the
Spot watcher run on threads of their own and report through events.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from . import __version__, disk
from .activity import ActivitySource
from .config import Config, GameConfig, InstallMethod, LaunchMode, ReadySignal
from .console import Console, console_path
from .errors import AgentError, ErrorCode, ProtocolError, RequestFailed
from .firewall import Firewall
from .idle import IdleMonitor
from .imds import Imds
from .install import Installer, podman_argv
from .installjob import GameControl, InstallJob
from .logsink import LogSink
from .protocol import (
    ERROR_TYPE,
    Empty,
    EventType,
    FirewallSync,
    InstallGame,
    OpenSftp,
    Preload,
    Request,
    RequestType,
    Shutdown,
    StopGame,
    encode,
    error_body,
    new_id,
    parse_request,
)
from .query import GameQuery
from .ready import LogWatch, Probe, ReadyWatcher, port_probe
from .seams import Clock, Runner
from .sftp import SftpService
from .supervisor import GameSupervisor

if TYPE_CHECKING:
    from .link import Link  # the protocol only; awscrt loads when the MQTT link is built

log = logging.getLogger(__name__)

_INBOX_MAX: Final = 256
_REMEMBERED_REPLIES: Final = 256
_SSHD_CHECK_S: Final = 30.0


@dataclass(frozen=True)
class Services:
    """What the agent drives; optional parts are None when disabled by config."""

    link: Link
    clock: Clock
    runner: Runner
    sink: LogSink
    activity: ActivitySource
    firewall: Firewall | None = None
    sftp: SftpService | None = None
    imds: Imds | None = None
    query: GameQuery | None = None  # [query]: the game's own player count, before traffic
    # `[ready] signal = "query"`: true once the game answers its query protocol (the query module's).
    query_probe: Probe | None = None


class _Deferred(Exception):
    """The handler keeps the request's id and replies when its work ends."""


def game_launch(cfg: Config) -> GameConfig:
    """The launch config the supervisor runs: for a podman install, the image run with the command as its
    arguments."""
    inst = cfg.install
    if inst is None or inst.method is not InstallMethod.PODMAN:
        return cfg.launch
    argv = podman_argv(inst, cfg.data.mountpoint, cfg.launch.unit, cfg.launch.command, cfg.launch.env)
    return replace(cfg.launch, command=tuple(argv), env={})


class Agent:
    """Answers the backend and looks after the game (DESIGN.md §4)."""

    def __init__(self, cfg: Config, services: Services) -> None:
        self.cfg = cfg
        self._s = services
        self._clock = services.clock
        self._inbox: queue.Queue[bytes] = queue.Queue(_INBOX_MAX)
        self._stopping = threading.Event()
        self._started = self._clock.monotonic()
        launch = game_launch(cfg)
        self._sink = LogWatch(services.sink, cfg.ready.pattern)
        self.ready = ReadyWatcher(cfg.ready, self._ready_probe(services), services.clock,
                                  self._playable, self._not_playable)
        console = (Console(console_path(launch, cfg.state_dir), launch.user)
                   if launch.console_save or launch.console_stop else None)
        self.game = GameSupervisor(
            launch, self._sink, services.clock, services.runner, self._game_exited,
            console=console, on_spawn=self._game_spawned,
        )
        self.install: InstallJob | None = None
        if cfg.install is not None:
            installer = Installer(cfg.install, data_dir=cfg.data.mountpoint, clock=services.clock,
                                  report=lambda body: self.emit(EventType.INSTALL_PROGRESS, dict(body)),
                                  user=launch.user, group=launch.group,
                                  transient=launch.mode is LaunchMode.SYSTEMD)
            control = GameControl(running=lambda: self.game.status().running, save=self.game.save,
                                  stop=self.game.stop, start=self.game.start)
            self.install = InstallJob(installer, control, self._reply, self.idle_reset)
        self._request_id: str | None = None
        self.idle = IdleMonitor(cfg.idle, services.clock)
        self.players: int | None = None
        self.player_names: tuple[str, ...] | None = None
        self._query_answers = False
        self._due: dict[str, float] = {}
        self._answered: OrderedDict[str, bytes] = OrderedDict()
        self._preloading = threading.Lock()
        self._spot_seen = False
        self._handlers: dict[RequestType, Callable[[Any], dict[str, Any]]] = {
            RequestType.GAME_START: self._start_game,
            RequestType.GAME_STOP: self._stop_game,
            RequestType.GAME_SAVE: self._save_game,
            RequestType.STATUS: self._status,
            RequestType.SFTP_OPEN: self._open_sftp,
            RequestType.DISK_EXTEND: self._extend_disk,
            RequestType.DISK_PRELOAD: self._preload,
            RequestType.FIREWALL_SYNC: self._firewall_sync,
            RequestType.SHUTDOWN: self._shutdown,
            RequestType.GAME_INSTALL: self._install_game,
        }

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, reconcile the firewall, start the game if configured, announce readiness."""
        self._s.link.start(self._enqueue, self._connected)
        if self._s.firewall is not None:
            try:
                self._s.firewall.reconcile()
            except AgentError as exc:
                self.emit(EventType.AGENT_ERROR, {"code": exc.code.value, "message": f"firewall: {exc}"})
        if self.install is not None:
            # ready first (the backend knows the agent is up), then the install, then the game.
            self.idle.reset()
            self.emit(EventType.READY, {"version": __version__, "game_running": False})
            self.install.at_start(self.cfg.launch.autostart)
            return
        if self.cfg.launch.autostart:
            try:
                self.game.start()
            except AgentError as exc:
                self.emit(EventType.AGENT_ERROR, {"code": exc.code.value, "message": str(exc)})
        self.idle.reset()
        self.emit(EventType.READY, {"version": __version__, "game_running": self.game.status().running})

    def run(self) -> None:
        """Serve until a shutdown request or ``request_stop``."""
        while not self._stopping.is_set():
            try:
                raw = self._inbox.get(timeout=0.2)
            except queue.Empty:
                pass
            else:
                self.handle(raw)
            self.tick()

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def close(self) -> None:
        """Stop the game, sshd, the log sink and the link."""
        if self.install is not None:
            self.install.done.wait(5)
        self.game.stop()
        self.ready.cancel()
        if self._s.sftp is not None:
            self._s.sftp.stop()
        self._sink.close()
        self._s.link.stop()

    # -- messages -----------------------------------------------------------------------------

    def _enqueue(self, raw: bytes) -> None:
        try:
            self._inbox.put_nowait(raw)
        except queue.Full:
            log.error("inbox full; dropped a %d-byte request", len(raw))

    def emit(self, event: EventType, body: dict[str, Any]) -> None:
        self._s.link.send(encode(new_id(), event.value, body))

    def handle(self, raw: bytes) -> None:
        """Answer one request; every failure becomes an ``error`` reply and the agent goes on.

        QoS 1 may deliver a request twice: a recently answered id gets its reply again, not a re-run.
        """
        req_id: str | None = None
        try:
            req = parse_request(raw)
            req_id = req.id
            cached = self._answered.get(req.id)
            if cached is not None:
                self._s.link.send(cached)
                return
            self._request_id = req.id
            body = self._handlers[req.type](req.body)
        except _Deferred:
            return
        except ProtocolError as exc:
            self._reply(exc.request_id, ERROR_TYPE, error_body(exc.code, str(exc)))
            return
        except AgentError as exc:
            self._reply(req_id, ERROR_TYPE, error_body(exc.code, str(exc)))
            return
        except Exception as exc:
            log.exception("request %s failed", req_id)
            message = f"internal error: {type(exc).__name__}"
            self._reply(req_id, ERROR_TYPE, error_body(ErrorCode.FAILED, message))
            return
        self._reply(req.id, req.type.reply_type, body)
        if req.type is RequestType.SHUTDOWN:
            self._after_shutdown(req)

    def _reply(self, req_id: str | None, msg_type: str, body: Mapping[str, Any]) -> None:
        payload = encode(req_id, msg_type, body)
        if req_id is not None:
            self._answered[req_id] = payload
            while len(self._answered) > _REMEMBERED_REPLIES:
                self._answered.popitem(last=False)
        self._s.link.send(payload)

    # -- periodic duties ----------------------------------------------------------------------

    def _due_now(self, name: str, every: float) -> bool:
        now = self._clock.monotonic()
        if now >= self._due.get(name, 0.0):
            self._due[name] = now + every
            return True
        return False

    def tick(self) -> None:
        """Run whichever periodic duties are due by the clock; a failing duty never stops the loop."""
        query = self._s.query
        # The stage's idle check bounds how seldom players are counted; a game's query may ask more often.
        count_every = self.cfg.idle.check_interval_s
        if query is not None:
            count_every = min(count_every, query.cfg.interval_s)
        duties: list[tuple[str, float, Callable[[], object]]] = [
            ("idle", count_every, self.check_idle),
            ("heartbeat", self.cfg.heartbeat_interval_s, self._heartbeat),
        ]
        if self._s.firewall is not None:
            duties.append(("firewall", self.cfg.firewall.reconcile_interval_s, self._s.firewall.reconcile))
        if self._s.sftp is not None:
            duties.append(("sshd", _SSHD_CHECK_S, self._s.sftp.keep_alive))
        for name, every, duty in duties:
            if not self._due_now(name, every):
                continue
            try:
                duty()
            except Exception:
                log.exception("periodic %s failed", name)

    def _heartbeat(self) -> None:
        st = self.game.status()
        fw = self._s.firewall
        # The backend compares the version with its own and sends the full set to a stale agent.
        self.emit(EventType.HEARTBEAT, {"game_running": st.running, "players": self.players,
                                        "idle_s": round(self.idle.idle_s()),
                                        "firewall_version": fw.version if fw is not None else None})

    def _connected(self, connections: int) -> None:
        """The link (re)connected: requests sent while it was away are lost (QoS 1 holds them only for a
        persistent session), so after a reconnect ask for the full grant set. The first connection is
        answered by the backend's reply to ``ready``."""
        if connections > 1 and self._s.firewall is not None:
            self.emit(EventType.FIREWALL_RESYNC, {"version": self._s.firewall.version, "reason": "reconnect"})

    def _count_players(self) -> tuple[int, tuple[str, ...] | None]:
        """The game's query when it answers (real players: traffic alone keeps no game up), else traffic
        or the probe command (no names). Raises AgentError when neither can count."""
        query = self._s.query
        if query is not None:
            seen = query.players()
            if (seen is not None) != self._query_answers:
                self._query_answers = seen is not None
                log.info("the game's %s query %s", query.cfg.protocol.value,
                         "answers" if seen is not None else "is unanswered: counting traffic")
            if seen is not None:
                return seen.count, seen.names
        return self._s.activity.players(), None

    def check_idle(self) -> None:
        """Count players and advance the idle state machine, publishing what changed."""
        try:
            players, names = self._count_players()
        except AgentError as exc:
            log.warning("player count unavailable: %s", exc)
            return
        if (players, names) != (self.players, self.player_names):
            self.emit(EventType.PLAYERS, {"count": players, "previous": self.players,
                                          "names": list(names) if names is not None else None})
            self.players, self.player_names = players, names
        event = self.idle.observe(players)
        if event is not None:
            self.emit(event.type, event.body)

    # -- game events --------------------------------------------------------------------------

    def idle_reset(self) -> None:
        self.idle.reset()

    def _ready_probe(self, services: Services) -> Probe | None:
        ready = self.cfg.ready
        if ready.signal is ReadySignal.PORT:
            assert ready.port is not None
            return port_probe(ready.port, ready.proto)
        if ready.signal is ReadySignal.LOG:
            return self._sink.matched
        if ready.signal is ReadySignal.QUERY:
            if services.query_probe is None:
                log.warning("ready.signal is query but no query probe is configured; playable at start")
            return services.query_probe
        return None

    def _game_spawned(self) -> None:
        self._sink.arm()
        self.ready.game_started()

    def _playable(self, after_s: float, signal: ReadySignal) -> None:
        self.emit(EventType.PLAYABLE, {"after_s": round(after_s, 1), "signal": signal.value})

    def _not_playable(self, message: str) -> None:
        self.emit(EventType.AGENT_ERROR, {"code": ErrorCode.FAILED.value, "message": message})

    def _game_exited(self, code: int, restart_in: float | None, restarts: int) -> None:
        self.ready.cancel()
        self.emit(EventType.GAME_EXITED,
                  {"exit_code": code, "restart_in_s": restart_in, "restarts": restarts})

    def on_spot_notice(self, notice: dict[str, Any]) -> None:
        """Save and stop the game once, then tell the backend (called by the Spot watcher)."""
        if self._spot_seen:
            return
        self._spot_seen = True
        saved = False
        try:
            saved = self.game.save()
        except AgentError as exc:
            log.error("save on spot notice failed: %s", exc)
        stopped = self.game.stop()
        self.emit(EventType.SPOT_NOTICE, {"action": notice.get("action"), "time": notice.get("time"),
                                          "saved": saved, "game_stopped": stopped.was_running})

    # -- request handlers ---------------------------------------------------------------------

    def _start_game(self, _body: Empty) -> dict[str, Any]:
        if self.install is not None and self._request_id and self.install.wait_start(self._request_id):
            raise _Deferred  # the install ends first; its job starts the game and replies
        pid, started = self.game.start()
        if started:
            self.idle.reset()
        return {"pid": pid, "started": started}

    def _stop_game(self, body: StopGame) -> dict[str, Any]:
        result = self.game.stop(body.grace_s)
        return {"was_running": result.was_running, "exit_code": result.exit_code, "killed": result.killed}

    def _save_game(self, _body: Empty) -> dict[str, Any]:
        return {"saved": self.game.save(), "synced": True}

    def _status(self, _body: Empty) -> dict[str, Any]:
        st = self.game.status()
        used = disk.usage(self.cfg.data.mountpoint)
        fw = self._s.firewall
        grants = fw.grants() if fw is not None else None
        return {
            "game": {"running": st.running, "pid": st.pid,
                     "uptime_s": round(st.uptime_s, 1) if st.uptime_s is not None else None,
                     "restarts": st.restarts, "last_exit_code": st.last_exit_code},
            "players": self.players,
            "idle": {"state": self.idle.state.value, "idle_s": round(self.idle.idle_s())},
            "disk": asdict(used) | {"mountpoint": str(self.cfg.data.mountpoint)} if used else None,
            "firewall": {"v4": sum(1 for a in grants if a.version == 4),
                         "v6": sum(1 for a in grants if a.version == 6)} if grants is not None else None,
            "agent": {"version": __version__, "uptime_s": round(self._clock.monotonic() - self._started, 1)},
        }

    def _open_sftp(self, body: OpenSftp) -> dict[str, Any]:
        if self._s.sftp is None:
            raise RequestFailed("sftp is disabled on this instance", ErrorCode.UNAVAILABLE)
        return asdict(self._s.sftp.open(body.ttl_s, body.host))

    def _extend_disk(self, _body: Empty) -> dict[str, Any]:
        return disk.extend(self._s.runner, self.cfg.data.mountpoint, self.cfg.data.device)

    def _preload(self, body: Preload) -> dict[str, Any]:
        device = disk.data_device(self._s.runner, self.cfg.data.mountpoint, self.cfg.data.device)
        if not self._preloading.acquire(blocking=False):
            raise RequestFailed("a preload is already running", ErrorCode.CONFLICT)

        def work() -> None:
            try:
                done, secs = disk.preload(
                    device, block_size=body.block_size,
                    progress=lambda n, total: self.emit(EventType.PRELOAD_PROGRESS, {
                        "bytes_read": n, "bytes_total": total,
                        "percent": round(100 * n / total, 1) if total else 100.0}),
                )
                self.emit(EventType.PRELOAD_DONE, {"device": str(device), "bytes_read": done,
                                                   "seconds": round(secs, 2)})
            except AgentError as exc:
                self.emit(EventType.AGENT_ERROR, {"code": exc.code.value, "message": f"preload: {exc}"})
            finally:
                self._preloading.release()

        threading.Thread(target=work, name="preload", daemon=True).start()
        return {"started": True, "device": str(device)}

    def _firewall_sync(self, body: FirewallSync) -> dict[str, Any]:
        if self._s.firewall is None:
            raise RequestFailed("the firewall is disabled on this instance", ErrorCode.UNAVAILABLE)
        counts = self._s.firewall.sync(body)
        have = counts["version"]
        if body.version is not None and (have is None or have < body.version):
            # A delta skipped because one before it never arrived: ask for the whole set.
            log.warning("firewall delta %d does not follow %s; asking for the full set", body.version, have)
            self.emit(EventType.FIREWALL_RESYNC, {"version": have, "reason": "gap"})
        return counts

    def _install_game(self, body: InstallGame) -> dict[str, Any]:
        if self.install is None:
            raise RequestFailed("this game has nothing to install (its server is set up by hand)",
                                ErrorCode.UNAVAILABLE)
        assert self._request_id is not None
        self.install.request(self._request_id, body.force)
        raise _Deferred

    def _shutdown(self, body: Shutdown) -> dict[str, Any]:
        return {"stopping": True, "poweroff": body.poweroff and self.cfg.shutdown_command is not None}

    def _after_shutdown(self, req: Request) -> None:
        assert isinstance(req.body, Shutdown)
        try:
            self.game.save()
        except AgentError as exc:
            log.error("save before shutdown failed: %s", exc)
        self.game.stop()
        self.request_stop()
        if req.body.poweroff and self.cfg.shutdown_command:
            self._s.runner.run(self.cfg.shutdown_command, check=False)
