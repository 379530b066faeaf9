"""`gangway run`: bring every part up on loopback, write `.local/stack.json`, stop all on Ctrl-C."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Final

from nacl.signing import SigningKey

from devstack.agents import start_agent_side
from devstack.aws import (
    LOCAL_ARTIFACTS_BUCKET,
    Emulator,
    artifacts_bucket,
    create_resources,
    emulator_settings,
    fake_credentials,
)
from devstack.discord_api import DiscordStandIn
from devstack.discord_user import snowflake
from devstack.iam import SOURCE as IAM_SOURCE
from devstack.iam import deployed_names, enforce, enforced, identify_handlers, tool_environment
from devstack.pump import Pump

__all__ = ["Ports", "Stack", "free_port"]

log = logging.getLogger("gangway.stack")
ROOT = Path(__file__).resolve().parent.parent
# The bot token the app and `gangway register --local` use; the stand-in refuses any other.
LOCAL_BOT_TOKEN: Final = "local-bot-token"  # noqa: S105 - the stand-in's, not a secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Ports:
    """Where each part listens; `auto()` picks free ports (tests run beside a running stack)."""

    api: int = 8000
    discord: int = 8001
    site: int = 8002
    mqtt: int = 1883
    aws: int = 5000

    @classmethod
    def auto(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


class _QuietSiteHandler(SimpleHTTPRequestHandler):
    # The customer-role template is published beside the site, as the deploy step does in S3.
    _PUBLISHED: ClassVar[dict[str, Path]] = {
        "/gangway-customer-role.yaml": ROOT / "policies" / "customer-role.yaml"
    }

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def translate_path(self, path: str) -> str:
        published = self._PUBLISHED.get(path.split("?", 1)[0])
        return str(published) if published else super().translate_path(path)


class Stack:
    """The whole local system in one process (plus Mosquitto as a child process)."""

    def __init__(self, state_dir: Path, ports: Ports) -> None:
        self.state_dir = state_dir
        self.ports = ports
        self._stoppers: list[Any] = []

    def start(self) -> dict[str, Any]:
        """Start every part and return the stack description written to stack.json."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key = SigningKey.generate()
        app_id = snowflake()
        p = self.ports
        aws_url = f"http://127.0.0.1:{p.aws}"
        discord = DiscordStandIn(
            port=p.discord,
            bot_token=LOCAL_BOT_TOKEN,
            application_id=app_id,
            # Set as the owner pastes it in the Developer Portal after `make deploy`.
            interactions_endpoint_url=f"http://127.0.0.1:{p.api}/discord/interactions",
        ).start()
        self._stoppers.append(discord.stop)
        site_url = self._serve_site()
        # The agent's wheelhouse, as `make deploy` builds it (cached under ~/.cache/gangway: built once per
        # lock file and agent sources), published to the emulator's S3 below: the user data StartGame
        # renders here names the same archive, hashes and requirements an instance in AWS would get.
        from deploy.wheelhouse import KEY_PREFIX, build, publish

        wheelhouse = build(say=log.info)
        env = {
            **fake_credentials(),
            **emulator_settings(),
            "GANGWAY_STAGE": "local",
            "AWS_ENDPOINT_URL": aws_url,
            "DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(),
            "DISCORD_APPLICATION_ID": app_id,
            "DISCORD_API_URL": discord.url,
            "DISCORD_BOT_TOKEN": LOCAL_BOT_TOKEN,
            "SITE_URL": site_url,
            # Agent commands go to the stack's Mosquitto (started below) instead of IoT Core.
            "MQTT_URL": f"mqtt://127.0.0.1:{p.mqtt}",
            "TENANT_CACHE_SECONDS": os.environ.get("TENANT_CACHE_SECONDS", "2"),
            "AGENT_WHEELHOUSE": f"s3://{LOCAL_ARTIFACTS_BUCKET}/{KEY_PREFIX}{wheelhouse.sha256}",
            # The local site serves the customer role's template (accounts.py falls back to it): never an
            # S3 URL inherited from the caller's environment, which nothing here can reach.
            "CUSTOMER_TEMPLATE_URL": "",
        }
        # IAM enforced (unless GANGWAY_ENFORCE_IAM=0): every handler calls the emulator as its function's
        # IAM user (devstack/iam.py), under the names the policies are written for, as the tests do.
        iam = enforced()
        if iam:
            env.update({"CREDENTIALS_SOURCE": IAM_SOURCE, **deployed_names("local")})
        # The app reads its settings from the environment once, like a Lambda container.
        os.environ.update(env)
        emulator = Emulator(p.aws).start()
        self._stoppers.append(emulator.stop)

        from chalice.config import Config
        from chalice.local import create_local_server

        if str(ROOT) not in sys.path:  # app.py lives at the project root, like the Lambda bundle's
            sys.path.insert(0, str(ROOT))
        import app as app_module
        from chalicelib.wiring import container

        c = container()
        urls = create_resources(c.settings, c.sqs(), c.client("dynamodb"), visibility_timeout=2)
        publish(c.client("s3"), artifacts_bucket(c.client("s3")), wheelhouse, say=log.info)
        tools = self._enforce(app_module.app, aws_url, c.settings.region, c.settings.stage) if iam else {}
        pump = Pump(c.sqs(), c.settings.region)
        pump.bind(urls[c.settings.jobs_queue], "jobs", app_module.jobs)
        pump.bind(urls[c.settings.steps_queue], "steps", app_module.steps)
        # The IoT rule's intake goes to agent_intake in batches of ten, which fills the fair agent-events
        # queue by tenant (chalicelib/agents/intake.py); the emulator delivers that one fairly.
        pump.bind(urls[c.settings.agent_intake_queue], "agent_intake", app_module.agent_intake, batch_size=10)
        pump.bind(urls[c.settings.agent_events_queue], "agent_events", app_module.agent_events)
        # The reaper runs every 10 minutes in AWS; GANGWAY_REAPER_SECONDS shortens it here.
        pump.every(float(os.environ.get("GANGWAY_REAPER_SECONDS", "600")), "reaper", app_module.reaper)
        pump.start()
        self._stoppers.append(pump.stop)

        server = create_local_server(app_module.app, Config.create(chalice_stage="local"), "127.0.0.1", p.api)
        thread = threading.Thread(target=server.server.serve_forever, name="api", daemon=True)
        thread.start()
        self._stoppers.append(server.shutdown)

        mqtt_url = self._start_mosquitto()
        if mqtt_url:  # the IoT rule's stand-in, and one agent process per running game instance
            queue = urls[c.settings.agent_intake_queue]
            self._stoppers.extend(start_agent_side(c, queue, mqtt_url, self.state_dir, free_port))
        stack = {
            "api_url": f"http://127.0.0.1:{p.api}",
            "discord_api_url": discord.url,
            "site_url": site_url,
            "mqtt_url": mqtt_url,
            "aws_endpoint_url": aws_url,
            "application_id": app_id,
            "public_key": key.verify_key.encode().hex(),
            "signing_key": key.encode().hex(),
            "image_parameter": c.settings.image_parameter,
            "image_owner": c.settings.image_owner,
            "pid": os.getpid(),
            "iam_enforced": iam,
            "tool_environment": tools,
        }
        path = self.state_dir / "stack.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stack, indent=2) + "\n")
        tmp.replace(path)
        return stack

    @staticmethod
    def _enforce(app: Any, aws_url: str, region: str, stage: str) -> dict[str, str]:
        """Turn IAM enforcement on once resources exist (as the deployment's stack makes them first);
        returns what tools run against this stack need in their environment (`gangway plan --local`, …):
        the admin's keys, since the emulator now lets only keys it issued in, and the deployed names."""
        identify_handlers(app)
        enforce(aws_url, region, stage)
        log.info("IAM enforced: each function calls the emulator as its own user (policies/*.json)")
        return tool_environment(stage)

    def _serve_site(self) -> str:
        # The page finds the API through config.json, which the deploy step writes next to it in S3.
        config = self.state_dir / "site-config.json"
        config.write_text(json.dumps({"api_url": f"http://127.0.0.1:{self.ports.api}"}) + "\n")
        published = {**_QuietSiteHandler._PUBLISHED, "/config.json": config}
        site_handler = type("_SiteHandler", (_QuietSiteHandler,), {"_PUBLISHED": published})
        handler = functools.partial(site_handler, directory=str(ROOT / "site"))
        server = ThreadingHTTPServer(("127.0.0.1", self.ports.site), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="site", daemon=True).start()
        self._stoppers.append(server.shutdown)
        return f"http://127.0.0.1:{self.ports.site}"

    def _start_mosquitto(self) -> str | None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            log.warning("mosquitto is not installed: the stack runs without an MQTT broker")
            return None
        conf = self.state_dir / "mosquitto.conf"
        conf.write_text(
            "per_listener_settings false\npersistence false\nset_tcp_nodelay true\n"
            f"listener {self.ports.mqtt} 127.0.0.1\nallow_anonymous true\n"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def stop() -> None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()

        self._stoppers.append(stop)
        return f"mqtt://127.0.0.1:{self.ports.mqtt}"

    def stop(self) -> None:
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()

    def serve(self) -> None:
        """Run until SIGINT/SIGTERM, then stop every part."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        try:
            done.wait()
        finally:
            self.stop()
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / "stack.json").unlink()
