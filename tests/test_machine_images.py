"""The machine image (issue 13, item 1): the publisher's parameter per architecture, the owner checked,
a pinned image, the cache, the onboarding dry run, and no image id written into the code.

The emulator publishes stand-in Debian images for both architectures, owned by its own account
(devstack/aws.py `seed_images`); the test settings name that account as the publisher (IMAGE_OWNER).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.config import Settings
from chalicelib.instances.images import (
    Image,
    ImageCache,
    ImageConfig,
    ImageRefused,
    ImageResolver,
    OwnerMismatch,
    resolve_image,
)
from chalicelib.tenancy import Verifier
from chalicelib.wiring import container
from devstack.aws import EMULATOR_ACCOUNT, Emulator
from devstack.discord_user import snowflake
from devstack.iam import create_customer_role

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = "136693071363"
OTHERS_IMAGE = "ami-12c6146b"  # one of moto's sample images, owned by another account


def _parameter(arch: str) -> str:
    name = container().settings.image_parameter.replace("{arch}", arch)
    return str(container().client("ssm").get_parameter(Name=name)["Parameter"]["Value"])


def _resolver(**config: str) -> ImageResolver:
    c = container()
    return ImageResolver(
        lambda: c.client("ec2"),
        lambda: c.client("ssm"),
        dataclasses.replace(ImageConfig.of(c.settings), **config),
        scope="test",
    )


def test_settings_name_debians_parameter_and_account_and_can_pin_another() -> None:
    default = Settings.from_env({})
    assert default.image_parameter == "/aws/service/debian/release/12/latest/{arch}"
    assert (default.image_owner, default.image_id) == (DEBIAN, "")
    pinned = Settings.from_env({"IMAGE_PARAMETER": "/x/{arch}", "IMAGE_OWNER": "1", "IMAGE_ID": " ami-1 "})
    assert (pinned.image_parameter, pinned.image_owner, pinned.image_id) == ("/x/{arch}", "1", "ami-1")


def test_each_architecture_boots_its_own_parameters_image(emulator: Emulator) -> None:
    resolver = _resolver()
    x86, arm = resolver.image("t3.medium"), resolver.image("t4g.medium")
    assert (x86.image_id, x86.architecture) == (_parameter("amd64"), "x86_64")
    assert (arm.image_id, arm.architecture) == (_parameter("arm64"), "arm64")
    assert resolver.architecture("m7g.large") == resolver.architecture("c7g.large") == "arm64"
    assert "/arm64" in arm.source


def test_an_image_of_another_owner_is_refused(emulator: Emulator) -> None:
    with pytest.raises(OwnerMismatch, match=f"belongs to account {EMULATOR_ACCOUNT}, not .* {DEBIAN}"):
        _resolver(owner=DEBIAN).image("t3.medium")
    with pytest.raises(OwnerMismatch):  # one bad type refuses the whole launch, fallbacks included
        _resolver(pinned=OTHERS_IMAGE).for_types(["t3.medium", "t3.large"])


def test_a_pinned_image_is_used_owner_checked_for_its_own_architecture(emulator: Emulator) -> None:
    pinned = _parameter("amd64")
    resolver = _resolver(pinned=pinned, parameter="/nowhere/{arch}")
    assert resolver.image("t3.large") == Image(pinned, "x86_64", "pinned by IMAGE_ID")
    # The game's own type first: an arm fallback cannot boot an x86 image and is left out...
    assert list(resolver.for_types(["t3.large", "t4g.large"])) == ["t3.large"]
    # ...but a game whose own type cannot boot it is refused, in words.
    with pytest.raises(ImageRefused, match="built for x86_64, not for arm64"):
        resolver.for_types(["t4g.large", "t3.large"])


def test_a_missing_parameter_or_unknown_type_is_refused_in_words(emulator: Emulator) -> None:
    with pytest.raises(ImageRefused, match="image parameter `/nowhere/amd64` does not exist"):
        _resolver(parameter="/nowhere/{arch}").image("t3.small")
    with pytest.raises(ImageRefused, match=r"does not offer the instance type `t3\.enormous`"):
        _resolver().image("t3.enormous")


def _stubbed() -> tuple[Any, Any, Stubber, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ssm = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return ec2, ssm, Stubber(ec2), Stubber(ssm)


def _answers(ec2s: Stubber, ssms: Stubber, *, with_type: bool = True) -> None:
    if with_type:
        arch = {"ProcessorInfo": {"SupportedArchitectures": ["arm64"]}, "InstanceType": "t4g.small"}
        ec2s.add_response("describe_instance_types", {"InstanceTypes": [arch]}, {"InstanceTypes": ["t4g.small"]})
    name = "/aws/service/debian/release/12/latest/arm64"
    ssms.add_response("get_parameter", {"Parameter": {"Name": name, "Value": "ami-0arm"}}, {"Name": name})
    image = {"ImageId": "ami-0arm", "OwnerId": DEBIAN, "State": "available", "Architecture": "arm64"}
    ec2s.add_response("describe_images", {"Images": [image]}, {"ImageIds": ["ami-0arm"]})


def test_the_real_parameter_path_and_owner_against_ec2s_and_ssms_shapes() -> None:
    ec2, ssm, ec2s, ssms = _stubbed()
    _answers(ec2s, ssms)
    with ec2s, ssms:
        image = resolve_image(ec2, ssm, "t4g.small", ImageConfig.of(Settings()))
    assert image == Image("ami-0arm", "arm64", "from /aws/service/debian/release/12/latest/arm64")
    ec2s.assert_no_pending_responses()


def test_what_was_resolved_is_cached_per_container_for_an_hour() -> None:
    ec2, ssm, ec2s, ssms = _stubbed()
    now = [0.0]
    cache = ImageCache(clock=lambda: now[0])
    resolver = ImageResolver(lambda: ec2, lambda: ssm, ImageConfig.of(Settings()), scope="a", cache=cache)
    _answers(ec2s, ssms)
    with ec2s, ssms:
        first = resolver.image("t4g.small")
        assert resolver.image("t4g.small") == first  # no call: the Stubber has nothing more to answer
        now[0] = 3601.0
        _answers(ec2s, ssms)
        assert resolver.image("t4g.small") == first  # asked again once the hour is over
    ssms.assert_no_pending_responses()


def _customer_role(external_id: str) -> str:
    """The access role as the customer's stack makes it: its trust with the ExternalId, its policies."""
    return create_customer_role(container().client("iam"), f"gangway-access-Role-{snowflake()}", external_id)


@pytest.mark.parametrize("owner", [EMULATOR_ACCOUNT, DEBIAN])
def test_the_onboarding_dry_run_launches_the_resolved_image_and_names_a_refused_one(
    emulator: Emulator, owner: str
) -> None:
    c = container()
    guild = snowflake()
    c.services.tenants.ensure(guild, created_by="1")
    tenant = c.services.tenants.offer_customer_account(guild)
    external_id = tenant.external_id or ""
    images = dataclasses.replace(ImageConfig.of(c.settings), owner=owner)
    seen: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        seen.append(str(params.get("ImageId")))

    def hook(client: Any) -> None:
        client.meta.events.register("before-parameter-build.ec2.RunInstances", note)

    c.broker.hooks.append(hook)
    try:
        result = Verifier(c.broker, images).verify(
            tenant, role_arn=_customer_role(external_id), region="eu-west-1", actor="test"
        )
    finally:
        c.broker.hooks.remove(hook)
    assert {"ssm:GetParameter", "ec2:DescribeImages", "ec2:DescribeInstanceTypes"} <= set(result.checked)
    if owner == EMULATOR_ACCOUNT:
        assert result.ok, result.problems
        assert seen and seen[0].startswith("ami-") and seen[0] != OTHERS_IMAGE
    else:
        assert not result.ok and not seen  # no dry run with an image gangway would not boot
        assert any("no machine image gangway trusts" in p and DEBIAN in p for p in result.problems)


def test_no_image_id_is_written_into_the_code_that_runs_in_aws() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("chalicelib", "deploy")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file() and path.suffix in {".py", ".json", ".yaml", ".sh", ".txt", ".j2", ".tmpl"}
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\bami-[0-9a-f]", line)
    ]
    assert found == []


def test_newgame_offers_graviton_types_with_their_prices_within_discords_limit() -> None:
    from chalicelib.commands.games_lifecycle import ARM_TYPES, INSTANCE_TYPES, type_hint

    assert {"t4g.medium", "t4g.large", "m7g.large", "c7g.large"} <= set(ARM_TYPES) <= set(INSTANCE_TYPES)
    assert len(INSTANCE_TYPES) <= 25  # Discord's options per select
    assert type_hint("t4g.large").startswith("Arm (Graviton): ~$0.067/h on-demand, ~$0.020-0.047/h Spot")
    assert type_hint("t3.large").startswith("x86: ~$0.083/h on-demand")
