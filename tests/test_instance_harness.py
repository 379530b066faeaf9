"""The booted instance's parts that need no root: the metadata stand-in's IMDSv2 rules, and where the
root file system comes from and is cached."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.instance.imds import InstanceMetadata, MetadataServer
from devstack.instance.rootfs import PACKAGES, archive_url, cache_path


@pytest.fixture
def imds() -> Iterator[MetadataServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = MetadataServer(
        listener, InstanceMetadata("i-0123456789abcdef0", "eu-west-1", "#!/bin/bash\n")
    ).start()
    yield server
    server.close()


def _call(server: MetadataServer, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    host, port = server.server_address[:2]
    req = urllib.request.Request(f"http://{host!s}:{port}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _token(server: MetadataServer) -> str:
    status, token = _call(server, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200 and token
    return token


def test_metadata_needs_a_token_from_a_put_as_imdsv2_does(imds: MetadataServer) -> None:
    assert _call(imds, "GET", "/latest/meta-data/instance-id", {})[0] == 401
    assert (
        _call(imds, "GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": "forged"})[0] == 401
    )
    token = {"X-aws-ec2-metadata-token": _token(imds)}
    assert _call(imds, "GET", "/latest/meta-data/instance-id", token) == (200, "i-0123456789abcdef0")
    assert _call(imds, "GET", "/latest/user-data", token) == (200, "#!/bin/bash\n")
    status, doc = _call(imds, "GET", "/latest/dynamic/instance-identity/document", token)
    assert status == 200 and json.loads(doc)["region"] == "eu-west-1"
    status, creds = _call(imds, "GET", "/latest/meta-data/iam/security-credentials/gangway-instance", token)
    assert status == 200 and {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"} <= set(
        json.loads(creds)
    )


def test_a_token_is_refused_without_a_ttl_out_of_range_or_through_a_proxy(imds: MetadataServer) -> None:
    assert _call(imds, "PUT", "/latest/api/token", {})[0] == 400
    assert (
        _call(imds, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21601"})[0] == 400
    )
    proxied = {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.9"}
    assert _call(imds, "PUT", "/latest/api/token", proxied)[0] == 403


def test_the_spot_notice_is_404_until_one_is_given(imds: MetadataServer) -> None:
    token = {"X-aws-ec2-metadata-token": _token(imds)}
    assert _call(imds, "GET", "/latest/meta-data/spot/instance-action", token)[0] == 404
    imds.spot_notice("terminate", in_s=120)
    status, body = _call(imds, "GET", "/latest/meta-data/spot/instance-action", token)
    assert status == 200 and json.loads(body)["action"] == "terminate"


def test_the_root_file_system_comes_from_this_machines_debian_archive(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert archive_url(tmp_path) == "http://mirror.example/debian"
    assert archive_url(tmp_path / "none") == "http://deb.debian.org/debian"


def test_the_cache_is_named_by_its_package_list(tmp_path: Path) -> None:
    assert cache_path(PACKAGES, tmp_path) == cache_path(tuple(reversed(PACKAGES)), tmp_path)
    assert cache_path(PACKAGES, tmp_path) != cache_path((*PACKAGES, "sudo"), tmp_path)
    assert cache_path(PACKAGES, tmp_path).parent == tmp_path
