"""moto's authentication corrected where it refuses, or lets through, what AWS decides otherwise
(feasibility.md, addenda): `correct_moto_auth` swaps in the request classes moto's authorization
imports at each call. devstack/iam.py calls it when it switches enforcement on.
"""

from __future__ import annotations

import json
from typing import Any, Final

from devstack.iam_conditions import STRICT_ROLES, decide, record_session_tags, request_resources, session_tags

__all__ = ["BATCH_ACTIONS", "correct_moto_auth"]

# SQS's batch operations are authorised as their single-message action (correct_moto_auth, 4).
BATCH_ACTIONS: Final = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def correct_moto_auth() -> None:
    """Make moto authenticate these kinds of request as AWS does (idempotent).

    1. A request without a body. moto 5.2.5 recomputes a SigV4 signature in
       `moto/iam/access_control.py` (`IAMRequestBase._create_aws_request`) over
       `data=self._body or self._data`: the fallback is meant for a form POST (the query protocol:
       werkzeug moves the body into the form, which `moto/core/responses.py` `setup_class` copies to
       `data`). But when a body is empty `data` is the query string, or failing that the request's
       headers, so every GET and DELETE of a rest-json service (IoT's DescribeEndpoint,
       ListThingPrincipals, DeleteThing, …) was hashed as a payload the client never sent and refused
       with SignatureDoesNotMatch. Now it falls back only for a form body.
    2. AssumeRole on a role trusting the account (`arn:aws:iam::<account>:root`, as
       policies/customer-role.yaml's role trusts the hosting account). moto's trust check
       (`_check_role_trust_relationship` → `IAMPolicyStatement._check_principal`) compares the
       principal with the caller's own ARN only, so a function's user never matched. In IAM the
       account principal delegates to the caller's identity policy, which moto has checked already;
       so a caller of that account is also tried as the account (conditions such as sts:ExternalId
       still apply).

    3. A presigned S3 URL (SigV4 in the query string, as a Lambda hands an instance its wheelhouse).
       moto reads the credential scope from an Authorization header only, so every presigned GET failed
       with a 500 once enforcement was on; in AWS it is the signer's request, checked against the
       signer's policies and refused once expired. Now it is exactly that.
    4. SQS's batch operations. IAM has no `sqs:SendMessageBatch`: SendMessageBatch needs
       `sqs:SendMessage`, DeleteMessageBatch `sqs:DeleteMessage`, ChangeMessageVisibilityBatch
       `sqs:ChangeMessageVisibility` (SQS developer guide, "Amazon SQS API permissions"), while moto
       checked the operation's own name, which no policy can grant. Now it checks the action AWS does.

    The classes moto's authorization imports at each call (`moto/core/authorization.py`) become ones
    that do this.
    """
    from moto.iam import access_control

    if getattr(access_control.IAMRequest, "gangway_corrected", False):
        return
    record_session_tags()
    access_control.IAMRequest = _iam_request_class()  # type: ignore[misc]
    access_control.S3IAMRequest = _s3_request_class()  # type: ignore[misc]


def _iam_request_class() -> Any:
    from moto.iam.access_control import IAMPolicy, IAMRequest, PermissionResult
    from moto.iam.utils import format_incoming_conditional_values

    class CorrectedIAMRequest(IAMRequest):
        """moto's IAMRequest: an empty body hashed as empty unless the request was a form POST; a role
        trusting the caller's account assumable by the caller; SQS batches checked as AWS checks them."""

        gangway_corrected = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._action = BATCH_ACTIONS.get(self._action, self._action)

        def _create_aws_request(self) -> Any:
            request = super()._create_aws_request()
            form = "x-www-form-urlencoded" in str(self._headers.get("Content-Type", "")).lower()
            if not self._body and not form:
                request.data = b""
            return request

        def check_action_permitted(self, resource: str) -> None:
            key = self._access_key
            role = getattr(key, "_owner_role_name", None)
            if role not in STRICT_ROLES or self._action == "sts:GetCallerIdentity":
                super().check_action_permitted(resource)
                return
            # A hosting-role session: its tag conditions decide, as in IAM (devstack/iam_conditions.py).
            policies = [json.loads(p) if isinstance(p, str) else p for p in key.collect_policies()]
            found = request_resources(
                self._action,
                self._data,
                self._body,
                region=self._region,
                account=self.account_id,
                path=self._path,
            )
            if not decide(policies, self._action, found, session_tags(key._access_key_id)):
                self._raise_access_denied()
            if self._is_assuming_role_operation(resource) and not self._check_role_trust_relationship(
                resource
            ):
                self._raise_access_denied()

        def _check_role_trust_relationship(self, role_arn: str) -> bool:
            tagged = any(k.startswith("Tags.member.") for k in self._data)
            if tagged and not self._trusts(role_arn, "sts:TagSession"):
                return False  # IAM: session tags need sts:TagSession in the role's trust policy
            return self._trusts(role_arn, self._action)

        def _trusts(self, role_arn: str, action: str) -> bool:
            saved = self._action
            self._action = action
            try:
                return self._trusts_now(role_arn)
            finally:
                self._action = saved

        def _trusts_now(self, role_arn: str) -> bool:
            if super()._check_role_trust_relationship(role_arn):
                return True
            caller = str(self._access_key.arn).split(":")
            account = f"arn:{caller[1]}:iam::{caller[4]}:root"
            trust = IAMPolicy(self.backend.get_role_by_arn(role_arn).assume_role_policy_document)
            result = trust.is_action_permitted(
                self._action, role_arn, account, format_incoming_conditional_values(self._data)
            )
            return bool(result == PermissionResult.PERMITTED)

    return CorrectedIAMRequest


def _s3_request_class() -> Any:
    import datetime
    from urllib.parse import parse_qsl, urlencode, urlsplit

    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from moto.iam.access_control import S3IAMRequest

    class PresignedS3IAMRequest(S3IAMRequest):
        """moto's S3IAMRequest, also for a SigV4 presigned URL (the signature in the query string)."""

        gangway_corrected = True

        def __init__(self, *, headers: dict[str, str], path: str, **kwargs: Any) -> None:
            self._query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
            self._presigned = "Authorization" not in headers and "X-Amz-Credential" in self._query
            if self._presigned:
                q = self._query
                headers = dict(headers)
                signature = q.get("X-Amz-Signature", "")
                headers["Authorization"] = (
                    f"AWS4-HMAC-SHA256 Credential={q['X-Amz-Credential']}, Signature={signature}"
                )
                if "X-Amz-Security-Token" in q:
                    headers["X-Amz-Security-Token"] = q["X-Amz-Security-Token"]
            super().__init__(headers=headers, path=path, **kwargs)

        def check_signature(self) -> None:
            if not self._presigned:
                super().check_signature()
                return
            q = self._query
            try:
                signed = datetime.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
                expires = int(q["X-Amz-Expires"])
            except (KeyError, ValueError):
                self._raise_access_denied()
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            if now > signed + datetime.timedelta(seconds=expires):
                self._raise_access_denied()  # S3 answers an expired URL with 403 AccessDenied
            unsigned = urlencode([(k, v) for k, v in q.items() if k != "X-Amz-Signature"])
            host = self._headers.get("Host", "")
            url = f"http://{host}{urlsplit(self._path).path}?{unsigned}"
            request = AWSRequest(method=self._method, url=url, headers={"host": host})
            request.context["timestamp"] = q["X-Amz-Date"]
            keys = self._access_key.create_credentials()
            auth = S3SigV4QueryAuth(keys, self._service, self._region, expires)
            canonical = auth.canonical_request(request)
            expected = auth.signature(auth.string_to_sign(request, canonical), request)
            if expected != q.get("X-Amz-Signature"):
                self._raise_signature_does_not_match()

    return PresignedS3IAMRequest
