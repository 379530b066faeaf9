"""Presigned S3 URLs under IAM enforcement (devstack/iam_moto.py correct_moto_auth): the signer's request, as in
AWS. moto refused every one with a 500 once enforcement was on, so an instance could not fetch its
wheelhouse; now a good URL serves the object and a forged, expired or unpermitted one gets S3's 403."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config

from chalicelib.wiring import container
from devstack.aws import Emulator
from devstack.iam import enforced, instance_credentials, running_as
from tests.conftest import WHEELHOUSE_ARCHIVE

BUCKET = "gangway-presigned-test"


def _s3(emulator: Emulator, keys: dict[str, str] | None = None) -> Any:
    k = keys or {}
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=emulator.url,
        config=Config(signature_version="s3v4"),
        aws_access_key_id=k.get("AccessKeyId"),
        aws_secret_access_key=k.get("SecretAccessKey"),
        aws_session_token=k.get("Token"),
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_presigned_url_is_checked_as_its_signers_request(emulator: Emulator) -> None:
    if not enforced():
        pytest.skip("IAM is not enforced (GANGWAY_ENFORCE_IAM=0)")
    admin = _s3(emulator)
    admin.create_bucket(Bucket=BUCKET)
    admin.put_object(Bucket=BUCKET, Key="agent/a b.tar", Body=b"wheels")

    def url(client: Any, expires: int = 600) -> str:
        return str(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": "agent/a b.tar"}, ExpiresIn=expires
            )
        )

    good = url(admin)
    assert _get(good) == (200, b"wheels")
    status, body = _get(good.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert status == 403 and b"SignatureDoesNotMatch" in body
    short = url(admin, expires=1)
    time.sleep(2.1)
    status, body = _get(short)
    assert status == 403 and b"AccessDenied" in body
    # The instance role may read its key and ship logs, not the artifacts bucket: its URL is refused.
    role = instance_credentials(container().settings.stage, "i-0presign")
    status, body = _get(url(_s3(emulator, role)))
    assert status == 403 and b"AccessDenied" in body, body


def test_the_wheelhouse_url_a_start_signs_is_one_an_instance_can_fetch(emulator: Emulator) -> None:
    """StartGame's steps sign the agent's wheelhouse URL with their own identity (wiring.py); under
    enforcement that URL serves the archive, as in AWS."""
    with running_as("steps"):
        install = container().wheelhouse.install()
    assert "X-Amz-Signature=" in install.url
    assert _get(install.url) == (200, WHEELHOUSE_ARCHIVE)
