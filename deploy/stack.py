"""`make deploy` and `make destroy` with boto3: build, package, deploy the stack, upload the site, register.

Deploy, in order: build the merged template (`deploy.template` in a fresh process, then `chalice package
--merge-template`); make sure the artifacts stack (`deploy/bootstrap.json`) exists; upload the Lambda
package and the template there (what `aws cloudformation package` does), and the agent's wheelhouse
(deploy/wheelhouse.py, under its sha256; the stack's AgentWheelhouse parameter names it); create or
update the stage's stack and wait; fill SiteUrl on the first create; put the bot token when one is
given; publish the customer role template to its bucket (/setup's quick-create link); upload `site/`;
register the slash commands; print the interactions endpoint URL.

Destroy: back up the tables, empty the site bucket, delete the stack, and say what stays.

Against the embedded emulator (`AWS_ENDPOINT_URL` set) the same code runs with two adaptations: moto
cannot run the SAM transform, so it runs here with aws-sam-translator (the translator CloudFormation
itself uses), and resource types moto's CloudFormation cannot create are left out (`EMULATOR_SKIPS`);
functions are not attached to web push's layer there (moto cannot update a function with a layer).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from deploy import wheelhouse as wh
from deploy.package import LAYER_ZIP, requirement_names
from deploy.package import split as split_package
from deploy.parameters import (
    adopt_legacy_secret,
    ensure_link_keys,
    ensure_vapid_keys,
    put_secure,
    read_secure,
    rotate_link_keys,
)
from deploy.template import ROOT, SECURE_PARAMETERS, Stage, queue_names, secure_parameter
from deploy.template.site import CUSTOMER_TEMPLATE_KEY

__all__ = [
    "EMULATOR_SKIPS",
    "Deployment",
    "for_emulator",
    "site_files",
]

Json = dict[str, Any]
ARTIFACTS_STACK: Final = "gangway-artifacts"
CAPABILITIES: Final = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
# Resource types moto 5.2's CloudFormation cannot create (it skips them with a warning), plus the
# API deployment and stage (moto does not import a RestApi's OpenAPI body, so it has no methods).
EMULATOR_SKIPS: Final = frozenset(
    {
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::Stage",
        "AWS::CloudFront::Distribution",
        "AWS::CloudFront::OriginAccessControl",
        "AWS::CloudFront::ResponseHeadersPolicy",
        "AWS::CloudWatch::Alarm",
        "AWS::IoT::TopicRule",
        "AWS::S3::BucketPolicy",
        "AWS::SNS::Subscription",
    }
)
# Text types get a charset; HTML and the service worker are revalidated on every load so a deploy
# shows at once, everything else is cached for an hour.
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
_NO_CACHE: Final = ("index.html", "sw.js")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def site_files(site: Path) -> Iterator[tuple[str, Path, str, str]]:
    """Every file of the site as (key, path, Content-Type, Cache-Control)."""
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        key = path.relative_to(site).as_posix()
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        cache = "no-cache" if path.name in _NO_CACHE or path.suffix == ".html" else "public, max-age=3600"
        yield key, path, ctype, cache


def _refs(value: Any) -> set[str]:
    """Logical ids a piece of template refers to (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else str(v).split(".")[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                found |= {m.split(".")[0] for m in _sub_names(text)}
            found |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= _refs(v)
    return found


def _sub_names(text: str) -> list[str]:
    import re

    return [m for m in re.findall(r"\$\{([^}!]+)\}", text) if not m.startswith("AWS::")]


def for_emulator(sam: Mapping[str, Any]) -> tuple[Json, list[str]]:
    """The SAM template as plain CloudFormation the emulator can create, and what was left out."""
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    cfn: Json = transform(json.loads(json.dumps(sam)), {"AWS::Region": region}, None)
    skipped = sorted(k for k, r in cfn["Resources"].items() if r["Type"] in EMULATOR_SKIPS)
    gone = set(skipped)
    changed = True
    while changed:  # drop whatever depends on a dropped resource, transitively
        changed = False
        for name, res in list(cfn["Resources"].items()):
            if name not in gone and _refs(res) & gone:
                gone.add(name)
                skipped.append(name)
                changed = True
    for name in gone:
        del cfn["Resources"][name]
    cfn["Outputs"] = {k: v for k, v in cfn.get("Outputs", {}).items() if not _refs(v) & gone}
    for res in cfn["Resources"].values():
        if res["Type"] == "AWS::ApiGateway::RestApi":  # CloudFormation takes it from the body's title
            res["Properties"].setdefault("Name", res["Properties"]["Body"]["info"]["title"])
        if res["Type"] == "AWS::Lambda::Function":
            # moto's stack update hands a function the LayerVersion object its Ref names instead of the
            # ARN, and fails; the emulator runs no function code, so the layer is made but not attached.
            res["Properties"].pop("Layers", None)
    cfn["Resources"] = _dependencies_first(cfn["Resources"])
    return cfn, skipped


def _dependencies_first(resources: Json) -> Json:
    """The resources reordered so each follows what it refers to or DependsOn.

    The emulator creates resources in template order and ignores DependsOn, so an SQS event source
    mapping (which names its queue by ARN text) could come before its queue: "Invalid EventSourceArn".
    """

    def needs(name: str) -> set[str]:
        res = resources[name]
        after = res.get("DependsOn", [])
        return (_refs(res) | set([after] if isinstance(after, str) else after)) & resources.keys() - {name}

    ordered: dict[str, Any] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered or name in path:  # a cycle is CloudFormation's to refuse, not ours
            return
        for dep in sorted(needs(name)):
            visit(dep, (*path, name))
        ordered[name] = resources[name]

    for name in resources:
        visit(name, ())
    return ordered


@dataclass
class Deployment:
    """One stage's stack in one account and region, reached through boto3 (or printed, when dry)."""

    stage: str
    build_dir: Path = ROOT / "build"
    dry_run: bool = False
    endpoint_url: str | None = field(default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL") or None)
    region: str = field(
        default_factory=lambda: (
            os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        )
    )
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    say: Callable[[str], None] = _say
    # Builds (or takes from ~/.cache/gangway) the agent's wheelhouse; a test may hand in its own.
    build_wheelhouse: Callable[[], wh.Wheelhouse] = field(default_factory=lambda: wh.build)
    _agent_wheelhouse: str = field(default="", repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def stack_name(self) -> str:
        return f"gangway-{self.stage}"

    @property
    def emulated(self) -> bool:
        return self.endpoint_url is not None

    @property
    def _poll(self) -> Json:
        return {"Delay": 1 if self.emulated else 5, "MaxAttempts": 720}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            make: Callable[..., Any] = boto3.client
            self._clients[service] = make(service, region_name=self.region, endpoint_url=self.endpoint_url)
        return self._clients[service]

    # -- build -------------------------------------------------------------------------------------

    def build(self, workflows: Path | None = None) -> Path:
        """Write `build/<stage>/sam.json` (merged) and `deployment.zip`; returns the template's path."""
        merge = self.build_dir / f"{self.stage}.resources.json"
        out = self.build_dir / self.stage
        gen = [sys.executable, "-m", "deploy.template", "--stage", self.stage, "--out", str(merge)]
        if workflows is not None:
            gen += ["--workflows", str(workflows)]
        chalice = [
            str(Path(sys.executable).parent / "chalice"),
            "package",
            "--stage",
            self.stage,
            "--merge-template",
            str(merge),
            str(out),
        ]
        # The generator reads the stage's environment itself; Chalice needs every queue name exported,
        # because app.py binds each SQS handler to its queue when Chalice imports it.
        queues = queue_names(Stage.load(self.stage))
        env = {k: v for k, v in self.env.items() if k not in queues} | {"AWS_DEFAULT_REGION": self.region}
        chalice_env = env | queues
        for cmd, cmd_env in ((gen, env), (chalice, chalice_env)):
            self.say("$ " + " ".join(cmd))
            if not self.dry_run:
                subprocess.run(cmd, cwd=ROOT, env=cmd_env, check=True)
        self.say(f"split {out / 'deployment.zip'}: the runtime's packages out, web push's to {LAYER_ZIP}")
        if not self.dry_run:
            got = split_package(out / "deployment.zip", requirement_names(ROOT / "requirements.txt"))
            self.say(
                f"function package {got.function_unpacked / 1e6:.1f} MB unpacked, "
                f"web push layer {got.layer_unpacked / 1e6:.1f} MB"
            )
        return out / "sam.json"

    # -- deploy ------------------------------------------------------------------------------------

    def deploy(self, template_path: Path, *, site: Path = ROOT / "site", guild: str | None = None) -> Json:
        """Everything after the build; returns the stack's outputs."""
        if self.dry_run:
            self._plan_deploy(template_path, site, guild)
            return {}
        sam = json.loads(template_path.read_text())
        bucket = self._artifacts_bucket()
        zip_path = template_path.parent / "deployment.zip"
        code_key = f"{self.stage}/{_sha256(zip_path.read_bytes())}.zip"
        self._upload_once(bucket, code_key, zip_path.read_bytes())
        self._agent_wheelhouse = wh.publish(self.client("s3"), bucket, self.build_wheelhouse(), say=self.say)
        layer_path = template_path.parent / LAYER_ZIP
        layer_key = f"{self.stage}/{_sha256(layer_path.read_bytes())}.layer.zip"
        self._upload_once(bucket, layer_key, layer_path.read_bytes())
        for res in sam["Resources"].values():
            if res["Type"] == "AWS::Serverless::Function":
                res["Properties"]["CodeUri"] = f"s3://{bucket}/{code_key}"
            elif res["Type"] == "AWS::Serverless::LayerVersion":
                res["Properties"]["ContentUri"] = f"s3://{bucket}/{layer_key}"
        self._ensure_parameters()
        params = self._parameters(sam)
        outputs = self._apply(self.stack_name, sam, params, bucket)
        site_url = outputs.get("SiteURL", "")
        if site_url and params.get("SiteUrl") != site_url:
            self.say(f"SiteUrl is now {site_url}: updating the functions' SITE_URL")
            outputs = self._apply(self.stack_name, sam, {**params, "SiteUrl": site_url}, bucket)
        self._fill_bot_token()
        if "CustomerTemplateBucketName" in outputs:
            self.publish_customer_template(outputs["CustomerTemplateBucketName"])
        if "SiteBucketName" in outputs:
            self.upload_site(
                outputs["SiteBucketName"], site, outputs.get("SiteDistributionId"), _published(outputs)
            )
        self._register(sam, guild)
        self.say("")
        self.say(
            f"Interactions Endpoint URL (Developer Portal, General Information):\n  "
            f"{outputs.get('InteractionsEndpointURL', '(no output: see the stack)')}"
        )
        if site_url:
            self.say(f"Site: {site_url}")
        return outputs

    def _plan_deploy(self, template_path: Path, site: Path, guild: str | None) -> None:
        say = self.say
        say(f"# deploy stage {self.stage} to {self.region} as stack {self.stack_name}")
        say(f"ensure stack {ARTIFACTS_STACK} from deploy/bootstrap.json (the artifacts bucket)")
        say(f"upload {template_path.parent / 'deployment.zip'} to s3://<artifacts>/{self.stage}/<sha256>.zip")
        say(f"upload {template_path.parent / LAYER_ZIP} to s3://<artifacts>/{self.stage}/<sha256>.layer.zip")
        say(f"upload {template_path} to s3://<artifacts>/{self.stage}/<sha256>.template.json")
        say(
            f"build the agent's wheelhouse into {wh.cache_dir()}/<key> (cached): the agent's wheel "
            f"and {wh.LOCK.relative_to(ROOT)} for "
            + ", ".join(f"{arch} ({tag})" for arch, tag in wh.PLATFORMS.items())
            + f", CPython {wh.PYTHON_VERSION}"
        )
        say(
            f"upload the wheelhouse to s3://<artifacts>/{wh.KEY_PREFIX}<sha256>.tar and "
            f"{wh.KEY_PREFIX}<sha256>.requirements.txt; AgentWheelhouse=s3://<artifacts>/"
            f"{wh.KEY_PREFIX}<sha256>"
        )
        say(f"create or update stack {self.stack_name} with {' '.join(CAPABILITIES)}, and wait")
        say("update the stack once more with SiteUrl=<SiteURL output> when it changed")
        say(
            f"copy the secrets gangway/{self.stage}/discord-bot-token and gangway/{self.stage}/vapid-keys "
            "from Secrets Manager into their parameters when an older deploy left them"
        )
        say(
            f"create the SecureString parameters {self._secure('ipauth-keys')} (new link keys) and "
            f"{self._secure('vapid-keys')} (a VAPID key pair, its public half alone in "
            f"{self._secure('vapid-public')}) when missing"
        )
        say(f"put DISCORD_BOT_TOKEN into {self._token_parameter} when set")
        say(
            f"put s3://<CustomerTemplateBucketName>/{CUSTOMER_TEMPLATE_KEY} (policies/customer-role.yaml; "
            "the functions' CUSTOMER_TEMPLATE_URL)"
        )
        for key, _, ctype, cache in site_files(site):
            say(f"put s3://<SiteBucketName>/{key} Content-Type={ctype!r} Cache-Control={cache!r}")
        say('put s3://<SiteBucketName>/config.json {"api_url": <EndpointURL output>}')
        say("invalidate /* on the site's CloudFront distribution")
        say("$ .venv/bin/gangway register" + (f" --guild {guild}" if guild else ""))
        say("print the InteractionsEndpointURL output")

    def _artifacts_bucket(self) -> str:
        body = json.loads((ROOT / "deploy" / "bootstrap.json").read_text())
        outputs = self._apply(ARTIFACTS_STACK, body, {}, None)
        return str(outputs["ArtifactsBucketName"])

    def _upload_once(self, bucket: str, key: str, data: bytes) -> None:
        s3 = self.client("s3")
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return
        except s3.exceptions.ClientError:
            pass
        self.say(f"uploading s3://{bucket}/{key} ({len(data) // 1024} KiB)")
        s3.put_object(Bucket=bucket, Key=key, Body=data)

    def _stack(self, name: str) -> Json | None:
        cfn = self.client("cloudformation")
        try:
            stacks = cfn.describe_stacks(StackName=name)["Stacks"]
        except cfn.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        stack: Json | None = stacks[0] if stacks else None
        if stack is not None and stack["StackStatus"] == "ROLLBACK_COMPLETE":
            # A first create that failed leaves an empty stack that can only be deleted.
            self.say(f"stack {name} failed its first create earlier: deleting it before trying again")
            cfn.delete_stack(StackName=name)
            cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig=self._poll)
            return None
        return stack

    def _parameters(self, sam: Mapping[str, Any]) -> dict[str, str]:
        """Parameter values to pass; the ones not given keep their previous value (or default)."""
        given: dict[str, str] = {}
        for param, var in (
            ("DiscordPublicKey", "DISCORD_PUBLIC_KEY"),
            ("DiscordApplicationId", "DISCORD_APPLICATION_ID"),
            ("AlarmEmail", "ALARM_EMAIL"),
        ):
            if self.env.get(var):
                given[param] = self.env[var]
        stack = self._stack(self.stack_name)
        previous = {
            p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters", [])
        }
        given["IotDataEndpoint"] = self._iot_endpoint()
        if self._agent_wheelhouse:
            given["AgentWheelhouse"] = self._agent_wheelhouse
        declared = set(sam.get("Parameters", {}))
        # Not given: keep the stack's current value (passed explicitly rather than UsePreviousValue,
        # which moto cannot resolve for parameters left at their default; no parameter is NoEcho).
        merged = {**previous, **given}
        return {k: merged[k] for k in sorted(declared) if k in merged}

    def _iot_endpoint(self) -> str:
        try:
            host = self.client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
        except Exception:  # the endpoint is optional until agents exist; the stack must still deploy
            return ""
        return f"https://{host}"

    def _apply(
        self, name: str, sam: Mapping[str, Any], params: Mapping[str, str], bucket: str | None
    ) -> dict[str, str]:
        """Create or update stack `name` and wait for it; returns its outputs."""
        cfn = self.client("cloudformation")
        template: Json = dict(sam)
        if self.emulated and "Transform" in template:
            template, skipped = for_emulator(template)
            self.say(
                f"emulator: SAM translated here; left out (moto cannot create them): {', '.join(skipped)}"
            )
        exists = self._stack(name) is not None
        body = json.dumps(template)
        source: Json = {"TemplateBody": body}
        if bucket and not self.emulated:
            key = f"{self.stage}/{_sha256(body.encode())}.template.json"
            self._upload_once(bucket, key, body.encode())
            source = {"TemplateURL": f"https://{bucket}.s3.{self.region}.amazonaws.com/{key}"}
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]
        self.say(f"{'updating' if exists else 'creating'} stack {name}")
        args: Json = {"StackName": name, "Parameters": parameters, "Capabilities": CAPABILITIES, **source}
        if exists:
            try:
                cfn.update_stack(**args)
            except cfn.exceptions.ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
                self.say(f"stack {name}: no changes")
                return self._outputs(name)
        else:
            cfn.create_stack(
                **args, OnFailure="ROLLBACK", Tags=[{"Key": "gangway:stage", "Value": self.stage}]
            )
        waiter = "stack_update_complete" if exists else "stack_create_complete"
        try:
            cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig=self._poll)
        except Exception:
            raise RuntimeError(f"stack {name} failed:\n" + "\n".join(self._failures(name))) from None
        return self._outputs(name)

    def described(self) -> Json | None:
        """The stage's stack as CloudFormation describes it, or None; read-only (unlike deploying,
        which deletes a stack left in ROLLBACK_COMPLETE), for `gangway doctor`."""
        cfn = self.client("cloudformation")
        try:
            stacks = cfn.describe_stacks(StackName=self.stack_name)["Stacks"]
        except cfn.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        return dict(stacks[0]) if stacks else None

    def _outputs(self, name: str) -> dict[str, str]:
        stack = self._stack(name) or {}
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def _failures(self, name: str) -> list[str]:
        events = self.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
        return [
            f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
            for e in events
            if e["ResourceStatus"].endswith("FAILED")
        ][:10]

    # -- the bot token and the commands ------------------------------------------------------------

    def _secure(self, name: str) -> str:
        return secure_parameter(self.stage, name)

    @property
    def _token_parameter(self) -> str:
        return self._secure("discord-bot-token")

    def _ensure_parameters(self) -> None:
        """The SecureString parameters the functions read and CloudFormation cannot make: the link keys
        and the VAPID key pair (its public half also alone, for the API function), made once and kept
        (destroy leaves them, the next deploy finds them)."""
        ssm, secrets = self.client("ssm"), self.client("secretsmanager")
        for name in ("discord-bot-token", "vapid-keys"):  # where an older gangway kept them
            legacy = f"gangway/{self.stage}/{name}"
            if adopt_legacy_secret(ssm, secrets, legacy, self._secure(name)):
                self.say(
                    f"copied the Secrets Manager secret {legacy} into {self._secure(name)}; delete the "
                    f"secret when this deploy works ($0.40/month): aws secretsmanager delete-secret "
                    f"--secret-id {legacy}"
                )
        ensure_link_keys(ssm, self._secure("ipauth-keys"))
        ensure_vapid_keys(ssm, self._secure("vapid-keys"), self._secure("vapid-public"))
        self.say(
            f"parameters ready: {self._secure('ipauth-keys')}, {self._secure('vapid-keys')}, "
            f"{self._secure('vapid-public')}"
        )

    def _fill_bot_token(self) -> None:
        token = self.env.get("DISCORD_BOT_TOKEN")
        if not token or token == self.bot_token():
            return
        ssm = self.client("ssm")
        exists = read_secure(ssm, self._token_parameter) is not None
        put_secure(ssm, self._token_parameter, token, overwrite=exists)
        self.say(f"put the bot token into {self._token_parameter}")

    def bot_token(self) -> str | None:
        """The stored bot token, or None while the parameter is missing or empty."""
        value = read_secure(self.client("ssm"), self._token_parameter)
        return (value or "").strip() or None

    def rotate_link_keys(self) -> list[str]:
        """A new IPAuth link key (the old one kept as previous, so links already given still open) and
        fresh containers for every function, so each seals with the new key at once. Returns the
        functions touched."""
        name = self._secure("ipauth-keys")
        if self.dry_run:
            self.say(f"put a new current key into {name}, keeping the current one as previous")
            self.say(f"update the description of every function of stack {self.stack_name}")
            return []
        ring = rotate_link_keys(self.client("ssm"), name)
        previous = ring.previous.key_id if ring.previous else "none"
        self.say(f"{name}: new key {ring.current.key_id}, previous {previous}")
        return self._recycle_containers("link keys rotated")

    def _register(self, sam: Mapping[str, Any], guild: str | None) -> None:
        app_id = self.env.get("DISCORD_APPLICATION_ID") or self._parameter("DiscordApplicationId", sam)
        token = self.env.get("DISCORD_BOT_TOKEN") or self.bot_token()
        if not app_id or not token:
            self.say(
                "not registering the slash commands: set DISCORD_APPLICATION_ID and DISCORD_BOT_TOKEN "
                "(or fill the secret) and run make deploy again"
            )
            return
        gangway = Path(sys.executable).parent / "gangway"
        cmd = [str(gangway), "register", *(["--guild", guild] if guild else [])]
        self.say("$ " + " ".join(cmd))
        subprocess.run(
            cmd, check=True, env={**self.env, "DISCORD_APPLICATION_ID": app_id, "DISCORD_BOT_TOKEN": token}
        )

    def _parameter(self, key: str, sam: Mapping[str, Any]) -> str:
        stack = self._stack(self.stack_name) or {}
        for p in stack.get("Parameters", []):
            if p["ParameterKey"] == key:
                return str(p.get("ParameterValue", ""))
        return str(sam.get("Parameters", {}).get(key, {}).get("Default", ""))

    def rotate_token(self, token: str) -> list[str]:
        """Store a new bot token and make every function of the stack start fresh containers.

        The jobs Lambda reads the secret once per container (chalicelib/wiring.py) and Lambda does not
        bound a container's life, so waiting is no plan. Any configuration change makes Lambda start
        new execution environments for later invocations; the description is the harmless one to
        change. Returns the functions touched.
        """
        if self.dry_run:
            self.say(f"put the new token into {self._token_parameter}")
            self.say(f"update the description of every function of stack {self.stack_name}")
            return []
        self.env = {**self.env, "DISCORD_BOT_TOKEN": token}
        self._fill_bot_token()
        return self._recycle_containers("bot token rotated")

    def _recycle_containers(self, why: str) -> list[str]:
        """Change every function's description, so Lambda starts new containers (which read again)."""
        lam, cfn = self.client("lambda"), self.client("cloudformation")
        summaries = cfn.list_stack_resources(StackName=self.stack_name)["StackResourceSummaries"]
        functions = [
            r["PhysicalResourceId"] for r in summaries if r["ResourceType"] == "AWS::Lambda::Function"
        ]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name in functions:
            lam.update_function_configuration(FunctionName=name, Description=f"{why} {stamp}")
        self.say(f"{len(functions)} functions will start new containers ({why})")
        return functions

    # -- the site ----------------------------------------------------------------------------------

    def publish_customer_template(self, bucket: str) -> str:
        """Put policies/customer-role.yaml where /setup's quick-create link points (CUSTOMER_TEMPLATE_URL):
        an S3 object, because CloudFormation takes a template URL only from S3."""
        self.client("s3").put_object(
            Bucket=bucket,
            Key=CUSTOMER_TEMPLATE_KEY,
            Body=(ROOT / "policies" / "customer-role.yaml").read_bytes(),
            ContentType="text/yaml; charset=utf-8",
            CacheControl="no-cache",
        )
        self.say(f"customer role template: s3://{bucket}/{CUSTOMER_TEMPLATE_KEY}")
        return CUSTOMER_TEMPLATE_KEY

    def upload_site(
        self,
        bucket: str,
        site: Path,
        distribution: str | None = None,
        extra: Mapping[str, tuple[bytes, str]] | None = None,
    ) -> list[str]:
        """Make the bucket hold exactly `site/` plus `extra` (key: body, type); invalidate CloudFront."""
        s3 = self.client("s3")
        keys = []
        for key, path, ctype, cache in site_files(site):
            s3.put_object(
                Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=ctype, CacheControl=cache
            )
            keys.append(key)
        for key, (body, ctype) in (extra or {}).items():
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=ctype, CacheControl="no-cache")
            keys.append(key)
        stale = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
            if o["Key"] not in keys
        ]
        if stale:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale]})
        self.say(
            f"site: {len(keys)} files in s3://{bucket}" + (f", {len(stale)} stale removed" if stale else "")
        )
        if distribution:
            self.client("cloudfront").create_invalidation(
                DistributionId=distribution,
                InvalidationBatch={
                    "Paths": {"Quantity": 1, "Items": ["/*"]},
                    "CallerReference": str(time.time()),
                },
            )
        return keys

    # -- destroy -----------------------------------------------------------------------------------

    def destroy(self) -> list[str]:
        """Back up the tables, empty the site bucket, delete the stack; returns what is kept."""
        if self.dry_run:
            for line in (
                f"# destroy stack {self.stack_name} in {self.region}",
                "back up every table of the stack (DynamoDB on-demand backups, kept)",
                "empty the site bucket and the customer template bucket",
                f"delete stack {self.stack_name} and wait",
            ):
                self.say(line)
            return []
        stack = self._stack(self.stack_name)
        if stack is None:
            self.say(f"stack {self.stack_name} does not exist: nothing to destroy")
            return []
        cfn, kept = self.client("cloudformation"), []
        resources = cfn.list_stack_resources(StackName=self.stack_name)["StackResourceSummaries"]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        for r in resources:
            if r["ResourceType"] == "AWS::DynamoDB::Table" and r.get("PhysicalResourceId"):
                table = r["PhysicalResourceId"]
                arn = self.client("dynamodb").create_backup(TableName=table, BackupName=f"{table}-{stamp}")
                kept.append(f"backup {arn['BackupDetails']['BackupArn']} (restore-table-from-backup)")
        outputs = self._outputs(self.stack_name)
        for bucket in filter(
            None, (outputs.get(k) for k in ("SiteBucketName", "CustomerTemplateBucketName"))
        ):
            s3 = self.client("s3")  # CloudFormation deletes only empty buckets
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
            self.say(f"emptied s3://{bucket}")
        self.say(f"deleting stack {self.stack_name}")
        cfn.delete_stack(StackName=self.stack_name)
        cfn.get_waiter("stack_delete_complete").wait(StackName=self.stack_name, WaiterConfig=self._poll)
        kept += [
            f"SecureString parameter {self._secure(name)} (no charge; the next deploy uses it again; "
            f"aws ssm delete-parameter --name {self._secure(name)} removes it)"
            for name in SECURE_PARAMETERS
        ]
        kept.append(f"stack {ARTIFACTS_STACK} (Lambda packages of every stage; delete it by hand when done)")
        self.say("deleted. Kept:")
        for line in kept:
            self.say(f"  {line}")
        return kept


def _published(outputs: Mapping[str, str]) -> dict[str, tuple[bytes, str]]:
    """Files the site serves beside `site/`: where the page finds the API (site/app.js reads
    config.json, as the local stack serves it). The customer role template is not among them:
    CloudFormation refuses a CloudFront URL as a template URL (see publish_customer_template)."""
    api_url = outputs.get("EndpointURL", "").rstrip("/")  # Chalice's output: https://…/api/
    return {"config.json": (json.dumps({"api_url": api_url}).encode(), "application/json")}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
