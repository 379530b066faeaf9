"""The `gangway` command: run the local stack, play a Discord user against it, register commands."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.request
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_args", "state_dir"]

DEFAULT_STATE = Path(".local")


def state_dir(text: str) -> Path:
    """`--state-dir` made absolute once, as it is parsed: the stack hands it to processes that run in
    other folders (each local agent runs in its instance's folder), where a relative path means nothing."""
    return Path(text).expanduser().absolute()


def _shown(path: Path) -> str:
    """A path as a person would type it from here: relative under the working folder, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _field(text: str) -> str:
    """One `--field name=value`; refused at parse time when it has no `=` (a form needs both)."""
    if "=" not in text or not text.partition("=")[0]:
        raise argparse.ArgumentTypeError(f"a form field is written name=value, got {text!r}")
    return text


def _use_tool_environment(stack: dict[str, Any], env: MutableMapping[str, str]) -> None:
    """An IAM-enforced stack (GANGWAY_ENFORCE_IAM=1) lets only keys it issued in: its admin's, without the
    fake session token (moto would take it for a temporary credential), and its deployed names."""
    tools: dict[str, str] = stack.get("tool_environment") or {}
    env.update(tools)
    if "AWS_ACCESS_KEY_ID" in tools:
        env.pop("AWS_SESSION_TOKEN", None)


def _load_stack(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "stack.json"
    if not path.exists():
        sys.exit(f"no local stack found at {_shown(path)}: start one with `make run`")
    stack: dict[str, Any] = json.loads(path.read_text())
    return stack


def _cmd_run(args: argparse.Namespace) -> int:
    from devstack.stack import Ports, Stack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "pynamodb", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ports = Ports.auto() if args.auto_ports else Ports()
    stack = Stack(args.state_dir, ports)
    try:
        info = stack.start()
    except Exception:
        stack.stop()
        raise
    for key in ("api_url", "discord_api_url", "site_url", "mqtt_url", "aws_endpoint_url"):
        print(f"{key:>18}: {info[key]}")
    print(f"{'stack.json':>18}: {_shown(args.state_dir / 'stack.json')}")
    print(
        'ready: try `gangway discord "/setup"` then `gangway discord "/help"`; Ctrl-C stops everything',
        flush=True,
    )
    stack.serve()
    return 0


def _cmd_discord(args: argparse.Namespace) -> int:
    from chalicelib.commands import registry
    from devstack.discord_schemas import InvalidFormBody, refusal
    from devstack.discord_user import DiscordUser, Who

    stack = _load_stack(args.state_dir)
    who = Who(
        guild_id=None if args.dm else args.guild,
        user_id=args.user,
        role_ids=tuple(r for r in args.roles.split(",") if r),
        permissions=0 if args.member else Who().permissions,
    )
    user = DiscordUser.from_stack(stack, who)
    if args.modal:
        fields = dict(f.partition("=")[::2] for f in args.field)
        payload = user.modal_submit(args.modal, fields)
    elif args.component:
        payload = user.component(args.component, args.values.split(",") if args.values is not None else None)
    else:
        payload = user.line(args.line, registry)
    try:
        status, body = user.post(payload)
    except InvalidFormBody as exc:
        print(json.dumps({"discord_refused": refusal(exc.errors)}, indent=2, ensure_ascii=False))
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps({"status": status, "response": body}, indent=2, ensure_ascii=False))
    deferred = isinstance(body, dict) and body.get("type") in (5, 6)
    if deferred and args.wait > 0:
        token = payload["token"]
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            with urllib.request.urlopen(stack["discord_api_url"] + "/_calls", timeout=5) as resp:  # noqa: S310
                calls = [c for c in json.loads(resp.read()) if token in c["path"]]
            if calls:
                print(
                    json.dumps({"follow_ups": calls}, indent=2, ensure_ascii=False).replace(token, "<token>")
                )
                break
            time.sleep(0.1)
        else:
            print(f"no follow-up within {args.wait}s", file=sys.stderr)
            return 1
    return 0 if status == 200 else 1


def _cmd_register(args: argparse.Namespace) -> int:
    from chalicelib.commands import registry
    from chalicelib.discord.rest import DiscordRest

    payload = registry.to_payload()
    if args.print:
        print(registry.payload_json(), end="")
        return 0
    if args.local:
        stack = _load_stack(args.state_dir)
        api, app_id, token = stack["discord_api_url"], stack["application_id"], "local-bot-token"
    else:
        api = os.environ.get("DISCORD_API_URL", "https://discord.com/api/v10")
        app_id = os.environ.get("DISCORD_APPLICATION_ID", "")
        token = os.environ.get("DISCORD_BOT_TOKEN", "")
        if not app_id or not token:
            sys.exit("set DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN (or use --local)")
    rest = DiscordRest(api, lambda: token)
    result = rest.put_commands(app_id, payload, guild_id=args.guild)
    scope = f"guild {args.guild}" if args.guild else "global"
    print(f"registered {len(result)} commands ({scope}): " + ", ".join(f"/{c['name']}" for c in result))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    """The operator's plan switch: show or set a tenant's plan."""
    if args.local:
        from devstack.aws import fake_credentials

        stack = _load_stack(args.state_dir)
        os.environ.update({**fake_credentials(), "AWS_ENDPOINT_URL": stack["aws_endpoint_url"]})
        _use_tool_environment(stack, os.environ)
    elif args.stage:
        os.environ["TENANTS_TABLE"] = f"gangway-{args.stage}-tenants"
    from chalicelib.tenancy import PLANS, TenantStore

    store = TenantStore(default_region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    tenant = store.read(args.guild)
    if tenant is None:
        sys.exit(f"guild {args.guild} has no tenant (it never ran /setup)")
    if args.set:
        if args.set not in PLANS:
            sys.exit(f"unknown plan {args.set!r}; plans: {', '.join(PLANS)}")
        tenant = store.set_plan(args.guild, args.set)
    print(f"guild {args.guild}: plan {tenant.plan}")
    return 0


def _cmd_vapid(args: argparse.Namespace) -> int:
    """Create the deployment's VAPID key pair in its SecureString parameter (once); print its public key."""
    from chalicelib.config import Settings

    env = dict(os.environ)
    if args.local:
        from devstack.aws import fake_credentials

        stack = _load_stack(args.state_dir)
        env.update(fake_credentials())
        env.update({"AWS_ENDPOINT_URL": stack["aws_endpoint_url"], "GANGWAY_STAGE": "local"})
        os.environ.update(env)
        _use_tool_environment(stack, os.environ)  # after: it also takes the fake session token away
        env = dict(os.environ)
    else:
        env["GANGWAY_STAGE"] = args.stage
        env.pop("VAPID_PARAMETER", None)
        env.pop("VAPID_PUBLIC_PARAMETER", None)
    cfg = Settings.from_env(env)
    from devstack.aws import ensure_vapid_keys

    public = ensure_vapid_keys(cfg, replace=args.rotate)
    what = "replaced" if args.rotate else "ready"
    print(
        f"VAPID keys {what} in parameter {cfg.vapid_parameter} (public half: {cfg.vapid_public_parameter}, "
        f"{cfg.region})\npublic key: {public}"
    )
    if args.rotate:
        sys.stderr.write("browsers subscribed with the old key must turn automatic authorisation on again\n")
    return 0


def _cmd_invite(args: argparse.Namespace) -> int:
    """Print the link that adds the bot to a server with the permissions it uses."""
    from chalicelib.discord.invite import invite_url

    app_id = args.app or os.environ.get("DISCORD_APPLICATION_ID", "")
    if not app_id.isdigit():
        sys.exit("set DISCORD_APPLICATION_ID or pass --app (the application id from the developer portal)")
    print(invite_url(app_id, args.guild))
    return 0


def _forward(text: str) -> tuple[int, int]:
    """One `--forward INSIDE:HERE` (or one port for both)."""
    inside, _, here = text.partition(":")
    try:
        return int(inside), int(here or inside)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a forward is a port or INSIDE:HERE, got {text!r}") from None


def _cmd_instance(args: argparse.Namespace) -> int:
    import os

    from devstack.instance.console import boot

    if os.geteuid() != 0:
        sys.exit("booting an instance needs root (systemd-nspawn, a loop device, a network namespace)")
    if args.user_data is not None and not args.user_data.is_file():
        sys.exit(f"no user data at {args.user_data}: give a script file")
    return boot(args.user_data, instance_id=args.instance_id, region=args.region, forward=dict(args.forward))


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Check the AWS account and the Discord application of a deployed stage (or the local stack)."""
    from deploy.doctor import Target, failed, run, table

    if args.local:
        from devstack.aws import fake_credentials

        path = Path(args.state_dir) / "stack.json"
        if not path.exists():
            sys.exit(f"no local stack found at {path}: start one with `make run`")
        os.environ.update(fake_credentials())
        _use_tool_environment(json.loads(path.read_text()), os.environ)
        target = Target.local(path, guild=args.guild)
    else:
        target = Target.deployed(args.stage, guild=args.guild)

    import boto3

    make: Callable[..., Any] = boto3.client

    def client(service: str) -> Any:
        return make(service, region_name=target.region, endpoint_url=target.endpoint_url)

    checks = run(target, client)
    print(table(checks, target))
    return 1 if failed(checks) else 0


def _instance_parser(sub: Any) -> None:
    ins = sub.add_parser("instance", help="a booted Debian 12 instance on this machine (root)")
    ins_sub = ins.add_subparsers(dest="action", required=True)
    bt = ins_sub.add_parser("boot", help="boot one, run the user data at first boot, Ctrl-C to stop")
    bt.add_argument("--user-data", type=Path, help="the script to run at first boot (default: a hello)")
    bt.add_argument("--instance-id", default="i-0123456789abcdef0", help="what the metadata service says")
    bt.add_argument("--region", default="us-east-1")
    bt.add_argument(
        "--forward", action="append", default=[], type=_forward,
        help="a port of this machine's loopback on the instance's, INSIDE:HERE (repeat for each)",
    )  # fmt: skip
    bt.set_defaults(fn=_cmd_instance)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed (`--state-dir` already absolute); `main` runs what it names."""
    parser = argparse.ArgumentParser(prog="gangway", description=__doc__)
    parser.add_argument(
        "--state-dir", type=state_dir, default=str(DEFAULT_STATE), help="where stack.json lives"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="bring the local stack up (Ctrl-C stops it)")
    run.add_argument(
        "--auto-ports", action="store_true", help="pick free ports instead of 8000-8002/1883/5000"
    )
    run.set_defaults(fn=_cmd_run)

    dis = sub.add_parser("discord", help='send a signed interaction, e.g. gangway discord "/games"')
    dis.add_argument("line", nargs="?", default="/help", help='a command line such as "/games game:valheim"')
    dis.add_argument("--component", help="send a component interaction with this custom_id instead")
    dis.add_argument("--values", help="comma-separated select values for --component")
    dis.add_argument("--modal", help="submit the form (modal) with this custom_id instead, e.g. games:create")
    dis.add_argument(
        "--field",
        action="append",
        default=[],
        type=_field,
        help="a form field for --modal, name=value (repeat it for each field)",
    )
    dis.add_argument("--guild", default="100000000000000001")
    dis.add_argument("--user", default="200000000000000002")
    dis.add_argument("--roles", default="", help="comma-separated role ids of the caller")
    dis.add_argument("--member", action="store_true", help="send as a member without server permissions")
    dis.add_argument("--dm", action="store_true", help="send from a direct message (no guild)")
    dis.add_argument(
        "--wait", type=float, default=5.0, help="seconds to wait for a deferred reply's follow-up"
    )
    dis.set_defaults(fn=_cmd_discord)

    reg = sub.add_parser("register", help="bulk-overwrite the slash commands (global or one guild)")
    reg.add_argument("--guild", help="register to this guild only (instant; for development)")
    reg.add_argument("--local", action="store_true", help="register against the local stack's stand-in")
    reg.add_argument("--print", action="store_true", help="print the payload instead of sending it")
    reg.set_defaults(fn=_cmd_register)

    inv = sub.add_parser("invite", help="print the link that adds the bot to a Discord server")
    inv.add_argument("--app", help="the application id (default: $DISCORD_APPLICATION_ID)")
    inv.add_argument("--guild", help="preselect this server in Discord's dialog")
    inv.set_defaults(fn=_cmd_invite)

    pln = sub.add_parser("plan", help="show or set a guild's plan (operator)")
    pln.add_argument("--guild", required=True)
    pln.add_argument("--set", help="the plan to set: free, community or pro")
    pln.add_argument("--local", action="store_true", help="against the local stack")
    pln.add_argument("--stage", help="the deployed stage whose tables to use (dev, prod)")
    pln.set_defaults(fn=_cmd_plan)

    vap = sub.add_parser("vapid", help="create the web-push VAPID key pair in SSM (once)")
    vap.add_argument(
        "--stage",
        default="dev",
        help="the stage: parameters /gangway/<stage>/vapid-keys and vapid-public",
    )
    vap.add_argument("--local", action="store_true", help="against the local stack's emulator")
    vap.add_argument("--rotate", action="store_true", help="replace an existing pair (browsers re-subscribe)")
    vap.set_defaults(fn=_cmd_vapid)

    doc = sub.add_parser(
        "doctor", help="check the AWS account and Discord application a deployment needs (before and after)"
    )
    doc.add_argument("--stage", default="dev", help="the deployed stage whose stack and secret to read")
    doc.add_argument("--local", action="store_true", help="check the local stack instead")
    doc.add_argument("--guild", help="compare the commands registered to this guild (make deploy GUILD=…)")
    doc.set_defaults(fn=_cmd_doctor)

    _instance_parser(sub)

    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: int = args.fn(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
