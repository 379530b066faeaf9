"""Web push for player access (issue 7): onboarding, the push flow's work, single-use push tokens.

The flow (chalicelib/workflows/addip-push.asl.json): `/addip` for an onboarded member defers; its job
starts the workflow, whose `push.send` step seals a short-lived single-use push token (an IPAuth token of
kind "push"), records it with the step's task token, pushes it to each of the member's browsers and
waits. The service worker posts the token to `POST /ipauth/authorize`; `AccessService` lets the
device's address in and calls `redeem` (once only) and `completed` here, which answers the waiting task
with the result. No device in time, or none reachable, gives the ordinary link instead.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from chalicelib.access import Authorized, Claims, LinkKind, TokenSealer
from chalicelib.errors import BadRequest, LinkRejected
from chalicelib.instances import error_code
from chalicelib.push.sender import Outcome, WebPushSender
from chalicelib.push.store import Preference, PushStore, Subscription, device_id
from chalicelib.push.subscription import SubscriptionRules, parse_subscription
from chalicelib.push.vapid import VapidSource

__all__ = ["FLOW_ID", "WORKFLOW", "Delivery", "PushService"]

log = logging.getLogger(__name__)

WORKFLOW: Final = "addip-push"
FLOW_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,80}")
# A push token works a little longer than the flow waits (clock skew, the last request in flight).
_TOKEN_MARGIN_S: Final = 5
_STALE: Final = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
_NOT_A_MEMBER_LINK: Final = (
    "Only your own /addip link can turn on automatic authorisation (not a guest link). Run /addip again."
)


@dataclass(frozen=True)
class Delivery:
    """What one push round did: how many browsers got it, and how many subscriptions were gone."""

    sent: int
    gone: int
    failed: int


def _result(done: Authorized) -> dict[str, Any]:
    g = done.grant
    return {
        "status": done.status,
        "address": g.address,
        "expires_at": g.expires_at,
        "games": list(done.games),
        "running": list(done.running),
    }


class PushService:
    """Subscriptions, sending, and the access hook (`redeem`/`completed`) for push tokens."""

    def __init__(
        self,
        *,
        store: PushStore,
        sealer: TokenSealer,
        vapid: VapidSource,
        sender: Callable[[], WebPushSender],
        sfn: Callable[[], Any],
        workflows: Callable[[], Any],
        rules: SubscriptionRules,
        member_days: Callable[[str], int] = lambda _tenant: 90,
    ) -> None:
        self._member_days = member_days  # the tenant's member grant length (/ipsettings)
        self._workflows = workflows
        self.store = store
        self._sealer = sealer
        self._vapid = vapid
        self._sender = sender
        self._sfn = sfn
        self._rules = rules

    # -- onboarding (the page) -------------------------------------------------------------------

    def public_key(self) -> str:
        """The applicationServerKey browsers subscribe with."""
        return self._vapid.public()

    def subscribe(self, token: str, subscription: object, preference: object, now: int) -> Subscription:
        """Store a browser's subscription for the member whose own link `token` is.

        Raises:
            LinkRejected: the token is invalid, expired, or not a member's link.  BadRequest: malformed.
        """
        if not isinstance(preference, str) or preference not in {p.value for p in Preference}:
            raise BadRequest('preference must be "addip", "start" or "off"')
        endpoint, p256dh, auth = parse_subscription(subscription, self._rules)
        claims = self._sealer.open(token, now=now)
        if claims.kind is not LinkKind.MEMBER or claims.user_id is None:
            raise LinkRejected("invalid", _NOT_A_MEMBER_LINK)
        sub = Subscription(
            tenant_id=claims.tenant_id,
            user_id=claims.user_id,
            endpoint=endpoint,
            p256dh=p256dh,
            auth=auth,
            preference=Preference(preference),
            created_at=now,
            expires_at=now + self._member_days(claims.tenant_id) * 86_400,
            link=claims.nonce,
            # This browser stays confirmed if its member confirmed it before (a changed preference).
            confirmed=any(
                s.device == device_id(endpoint) and s.confirmed
                for s in self.store.subscriptions(claims.tenant_id, claims.user_id, now)
            ),
        )
        self.store.save(sub)
        return sub

    def confirm(self, tenant_id: str, user_id: str, link: str, now: int) -> int:
        """The member pressed /addip's confirm button: their browsers bound with that link may push."""
        return self.store.confirm(tenant_id, user_id, link, now)

    def forget(self, tenant_id: str, user_id: str | None) -> int:
        """Delete a member's browsers (everyone's with None) when their access is revoked."""
        return self.store.forget(tenant_id, user_id)

    def unsubscribe(self, endpoint: object, auth: object) -> int:
        """Delete one browser's subscriptions in every tenant; the caller proves the browser by the
        subscription's auth secret, which only it and we know. Returns how many were deleted.

        Raises:
            BadRequest: malformed.
        """
        if not isinstance(endpoint, str) or not 1 <= len(endpoint) <= self._rules.max_endpoint:
            raise BadRequest("endpoint must be the subscription's endpoint URL")
        if not isinstance(auth, str) or not 1 <= len(auth) <= 64:
            raise BadRequest("auth must be the subscription's auth secret")
        device = device_id(endpoint)
        deleted = 0
        for tenant_id, user_id in self.store.devices(device):
            sub = self.store.subscription(tenant_id, user_id, device)
            if sub is not None and sub.endpoint == endpoint and sub.auth == auth:
                self.store.delete(tenant_id, user_id, device)
                deleted += 1
        return deleted

    # -- the interaction side --------------------------------------------------------------------

    def wants_push(self, tenant_id: str, user_id: str, trigger: Preference = Preference.ADDIP) -> bool:
        """Whether the member has a browser that asked for pushes on `trigger` (one Query)."""
        return bool(self._targets(tenant_id, user_id, trigger))

    def _targets(self, tenant_id: str, user_id: str, trigger: Preference) -> list[Subscription]:
        wanted = {Preference.ADDIP, Preference.START} if trigger is Preference.ADDIP else {Preference.START}
        subs = self.store.subscriptions(tenant_id, user_id)
        return [s for s in subs if s.preference in wanted and s.confirmed]

    def start(
        self,
        *,
        tenant_id: str,
        user_id: str,
        flow: str,
        timeout: int,
        application_id: str = "",
        interaction_token: str = "",
        trigger: Preference = Preference.ADDIP,
        game: str = "-",
    ) -> str:
        """Start the `addip-push` workflow for one member (named `flow`, so starting twice is one run);
        the interaction's token (when there is one) lets its steps edit the deferred reply. Returns the
        execution ARN."""
        if not FLOW_ID.fullmatch(flow):
            raise BadRequest("malformed flow id")
        started: str = self._workflows().start(
            WORKFLOW,
            name=flow,
            input={
                "tenant": tenant_id,
                "game": game,
                "user": user_id,
                "flow": flow,
                "trigger": trigger.value,
                "timeout": timeout,
                "interaction_id": flow,
                "application_id": application_id,
                "interaction_token": interaction_token,
            },
        )
        return started

    def start_for_game(self, tenant_id: str, game: str, *, execution: str, timeout: int = 60) -> int:
        """Push to every member of the tenant whose browser asked for it on /start (one flow each, named
        after the start's execution, so a retried step starts nothing twice). Returns how many."""
        users = sorted(
            {
                s.user_id
                for s in self.store.tenant_subscriptions(tenant_id)
                if s.preference is Preference.START and s.confirmed and s.expires_at > time.time()
            }
        )
        base = re.sub(r"[^A-Za-z0-9_-]", "-", execution.rsplit(":", 1)[-1])[:50]
        for user in users:
            self.start(
                tenant_id=tenant_id,
                user_id=user,
                flow=f"{base}-{user}"[:80],
                timeout=timeout,
                trigger=Preference.START,
                game=game,
            )
        return len(users)

    # -- the flow (steps Lambda) -----------------------------------------------------------------

    def send(
        self,
        tenant_id: str,
        user_id: str,
        *,
        flow: str,
        task_token: str,
        timeout: int,
        now: int,
        trigger: Preference = Preference.ADDIP,
    ) -> Delivery:
        """Seal a push token, record it with the waiting task token, and push it to the member's
        browsers; gone subscriptions (404/410) are deleted."""
        if not FLOW_ID.fullmatch(flow):
            raise BadRequest("malformed flow id")
        targets = self._targets(tenant_id, user_id, trigger)
        if not targets:
            return Delivery(0, 0, 0)
        keys = self._vapid.keys()
        token, claims = self._sealer.seal(
            tenant_id=tenant_id,
            kind=LinkKind.PUSH,
            issued_at=now,
            lifetime_s=timeout + _TOKEN_MARGIN_S,
            user_id=user_id,
            nonce=flow,
        )
        self.store.open_wait(tenant_id, flow, user_id, task_token, claims.expires_at)
        payload = json.dumps(
            {"v": 1, "type": "ipauth", "token": token, "expires_at": claims.expires_at}, separators=(",", ":")
        ).encode()
        sender = self._sender()
        counts = dict.fromkeys(Outcome, 0)
        for sub in targets:
            outcome = sender.send(sub, payload, keys, ttl=timeout, urgency="high").outcome
            counts[outcome] += 1
            if outcome is Outcome.GONE:
                self.store.delete(tenant_id, user_id, sub.device)
                log.info("push subscription of device %s is gone: deleted", sub.device)
        return Delivery(counts[Outcome.SENT], counts[Outcome.GONE], counts[Outcome.FAILED])

    def close(self, tenant_id: str, flow: str) -> Mapping[str, Any] | None:
        """Stop the flow's push token from working; the result if a device used it first."""
        waiting = self.store.close(tenant_id, flow)
        return waiting.result if waiting is not None and waiting.state == "used" else None

    # -- the access hook (POST /ipauth/authorize with a push token) ------------------------------

    def redeem(self, claims: Claims, now: int) -> None:
        """Use the push token once. Raises LinkRejected when replayed, foreign or no longer waited for."""
        if claims.user_id is None:
            raise LinkRejected("invalid", _NOT_A_MEMBER_LINK)
        self.store.redeem(claims.tenant_id, claims.nonce, claims.user_id, now)

    def completed(self, claims: Claims, done: Authorized) -> None:
        """Keep the result and answer the waiting task (a task that gave up meanwhile is only logged)."""
        result = _result(done)
        self.store.finish(claims.tenant_id, claims.nonce, result)
        waiting = self.store.wait(claims.tenant_id, claims.nonce)
        if waiting is None or not waiting.task_token:
            return
        try:
            self._sfn().send_task_success(taskToken=waiting.task_token, output=json.dumps(result))
        except Exception as exc:
            # The address is let in either way: a flow that misses this answer times out, and its fallback
            # finds the stored result and shows it, so the browser's request must not fail here.
            code = error_code(exc)
            if code in _STALE:
                log.info("push flow %s no longer waits (%s)", claims.nonce, code)
            else:
                log.exception("push flow %s: task not answered; its fallback shows the result", claims.nonce)
