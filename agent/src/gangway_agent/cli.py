"""``gangway-agent``: load the config, build the parts (the composition root) and serve.

Exit codes: 0 after a shutdown request or SIGTERM, 2 for a bad config, 1 for any other start-up failure.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from . import config as config_mod
from .activity import Watched, pick_source
from .agent import Agent, Services
from .config import Config
from .errors import AgentError, ConfigError
from .firewall import Firewall
from .imds import Imds
from .logsink import build_sink
from .query import GameQuery
from .seams import SubprocessRunner, SystemClock
from .sftp import SftpService
from .spot import SpotWatcher

log = logging.getLogger("gangway_agent")


def build(cfg: Config) -> tuple[Agent, SpotWatcher | None]:
    """Wire the real implementations together (the only place that does)."""
    from .link import MqttLink  # awscrt is loaded only by the process that talks MQTT

    clock, runner = SystemClock(), SubprocessRunner()
    imds = Imds(cfg.spot.imds_url, clock) if cfg.spot.enabled else None
    sftp_ports = (cfg.sftp.port,) if cfg.sftp.enabled else ()
    firewall = Firewall(
        table=cfg.firewall.table, tcp_ports=cfg.launch.ports.tcp, always_tcp=sftp_ports,
        udp_ports=cfg.launch.ports.udp, runner=runner, clock=clock,
        state_file=cfg.state_dir / "grants.json",
    ) if cfg.firewall.enabled else None
    sftp = SftpService(
        cfg.sftp, state_dir=cfg.state_dir, runner=runner, clock=clock,
        host_lookup=imds.public_host if imds is not None else lambda: None,
    ) if cfg.sftp.enabled else None
    query = GameQuery(cfg.query) if cfg.query is not None else None
    services = Services(
        link=MqttLink(cfg.mqtt, sub_topic=cfg.cmd_topic, pub_topic=cfg.evt_topic),
        clock=clock, runner=runner,
        sink=build_sink(cfg.logs, f"{cfg.game}-{int(clock.now())}"),
        activity=pick_source(Watched.of(cfg.launch.ports, sftp_ports), runner, cfg.launch.player_probe),
        firewall=firewall, sftp=sftp, imds=imds,
        query=query,
        query_probe=query.answers if query is not None else None,
    )
    agent = Agent(cfg, services)
    watcher = SpotWatcher(imds, cfg.spot.interval_s, agent.on_spot_notice) if imds is not None else None
    return agent, watcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gangway-agent", description=__doc__)
    parser.add_argument("--config", "-c", type=Path, default=Path("/etc/gangway/agent.toml"),
                        help="JSON or TOML config file (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only validate the config and exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        print(f"gangway-agent: config error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"config OK: {cfg.tenant}/{cfg.game}")
        return 0
    try:
        agent, watcher = build(cfg)
    except ConfigError as exc:
        print(f"gangway-agent: config error: {exc}", file=sys.stderr)
        return 2
    except AgentError as exc:
        print(f"gangway-agent: cannot start: {exc}", file=sys.stderr)
        return 1

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        agent.request_stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    agent.start()
    if watcher is not None:
        watcher.start()
    try:
        agent.run()
    finally:
        if watcher is not None:
            watcher.stop()
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
