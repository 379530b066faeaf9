"""EC2's own events (EventBridge): the Spot interruption warning starts the stop path at once.

AWS gives two minutes between the warning and the reclaim; StopGame saves, snapshots and cleans up
within that. The rule lives in the hosting account, so it sees the hosting account's instances; games
in a customer's account rely on their agent, which polls IMDS for the same notice (`spot.notice`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.errors import Conflict
from chalicelib.games import GameState
from chalicelib.lifecycle.collaborators import Lifecycle
from chalicelib.lifecycle.stop_game import begin_stop

__all__ = ["SPOT_WARNING", "on_ec2_event"]

log = logging.getLogger(__name__)

SPOT_WARNING: Final = "EC2 Spot Instance Interruption Warning"
SPOT_SAVE_TIMEOUT: Final = 45


def on_ec2_event(event: Mapping[str, Any], lc: Lifecycle, ec2: Any) -> str:
    """Handle one EventBridge event; `ec2` is the hosting account's EC2 client. Returns what happened."""
    if event.get("detail-type") != SPOT_WARNING or event.get("source") != "aws.ec2":
        return "ignored"
    detail = event.get("detail")
    instance_id = detail.get("instance-id") if isinstance(detail, Mapping) else None
    if not isinstance(instance_id, str) or not instance_id.startswith("i-") or len(instance_id) > 32:
        log.warning("spot warning without a usable instance id")
        return "malformed"
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except Exception:
        log.warning("spot warning for unknown instance %s", instance_id, exc_info=True)
        return "unknown-instance"
    tags = {t["Key"]: t["Value"] for r in reservations for i in r["Instances"] for t in i.get("Tags", [])}
    tenant, name = tags.get("gangway:tenant"), tags.get("gangway:game")
    if not tenant or not name:
        return "not-ours"
    game = lc.games.get(tenant, name)
    if game is None or game.resources.instance_id != instance_id or game.state is not GameState.RUNNING:
        return "not-running"
    try:
        begin_stop(lc, game, reply=None, reason="spot interruption", save_timeout=SPOT_SAVE_TIMEOUT)
    except Conflict:
        return "already-stopping"
    return "stopping"
