"""gangway's Chalice app: a switchboard of routes and event bindings (lesson L1).

Each binding hands the request or event to an object built in `chalicelib.wiring`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Chalice, CloudWatchEvent, IAMAuthorizer, Rate, Request, Response, SQSEvent

from chalicelib import wiring
from chalicelib.config import settings

if TYPE_CHECKING:
    from chalicelib.agents import BatchResponse
    from chalicelib.http import HttpReply

app = Chalice(app_name="gangway")


@app.route("/discord/interactions", methods=["POST"], content_types=["application/json"])
def interactions() -> Response:
    req = app.current_request
    assert req is not None  # Chalice sets it for every route call
    return _reply(wiring.container().endpoint.handle(req.raw_body, req.headers))


@app.on_sqs_message(queue=settings().jobs_queue, batch_size=1)
def jobs(event: SQSEvent) -> None:
    for record in event:
        attrs = record.to_dict().get("attributes", {})
        receives = int(attrs.get("ApproximateReceiveCount", "1"))
        wiring.container().job_runner.run(record.body, receives, attrs.get("AWSTraceHeader"))


@app.on_sqs_message(queue=settings().steps_queue, batch_size=1)
def steps(event: SQSEvent) -> None:
    for record in event:
        attrs = record.to_dict().get("attributes", {})
        wiring.container().step_runner.run(record.body, attrs.get("AWSTraceHeader"))


# The IoT rule's queue: each event goes on to agent_events' fair queue with its tenant as message group, so
# one tenant's flood cannot delay another's events (chalicelib/agents/intake.py). The template turns on
# ReportBatchItemFailures for it (deploy/template/functions.py): only the records returned are retried.
@app.on_sqs_message(queue=settings().agent_intake_queue, batch_size=10)
def agent_intake(event: SQSEvent) -> BatchResponse:
    return wiring.container().agent_intake.run([record.to_dict() for record in event])


@app.on_sqs_message(queue=settings().agent_events_queue, batch_size=1)
def agent_events(event: SQSEvent) -> None:
    for record in event:
        wiring.container().agent_events.run(record.body)


# -- player access (issue 5): the IPAuth page's API and the reaper of expired grants ------------------


def _ipauth_request() -> tuple[Request, str]:
    req = app.current_request
    assert req is not None
    # The address API Gateway saw; X-Forwarded-For and friends are never trusted.
    return req, str((req.context.get("identity") or {}).get("sourceIp") or "")


@app.route("/ipauth/authorize", methods=["POST"], content_types=["application/json"])
def ipauth_authorize() -> Response:
    req, source_ip = _ipauth_request()
    return _reply(wiring.container().ipauth.authorize(req.raw_body, req.headers, source_ip))


@app.route("/ipauth/check", methods=["GET"])
def ipauth_check() -> Response:
    req, source_ip = _ipauth_request()
    return _reply(wiring.container().ipauth.check(req.headers, source_ip))


@app.route("/ipauth/authorize", methods=["OPTIONS"])
@app.route("/ipauth/check", methods=["OPTIONS"])
def ipauth_preflight() -> Response:
    req, _ = _ipauth_request()
    return _reply(wiring.container().ipauth.preflight(req.headers))


# -- web push (issue 7): the page turns automatic authorisation on and off ----------------------------


@app.route("/push/key", methods=["GET"])
def push_key() -> Response:
    req, _ = _ipauth_request()
    return _reply(wiring.container().push_api.key(req.headers))


@app.route("/push/subscribe", methods=["POST"], content_types=["application/json"])
def push_subscribe() -> Response:
    req, source_ip = _ipauth_request()
    return _reply(wiring.container().push_api.subscribe(req.raw_body, req.headers, source_ip))


@app.route("/push/subscribe", methods=["DELETE"], content_types=["application/json"])
def push_unsubscribe() -> Response:
    req, source_ip = _ipauth_request()
    return _reply(wiring.container().push_api.unsubscribe(req.raw_body, req.headers, source_ip))


@app.route("/push/key", methods=["OPTIONS"])
@app.route("/push/subscribe", methods=["OPTIONS"])
def push_preflight() -> Response:
    req, _ = _ipauth_request()
    return _reply(wiring.container().push_api.preflight(req.headers))


@app.schedule(Rate(10, unit=Rate.MINUTES))
def reaper(event: CloudWatchEvent) -> None:
    wiring.container().reconcile_games()
    wiring.container().access.reap()


# -- game state (issue 4): the internal API, IAM-authorised in AWS ------------------------------------


@app.route("/internal/games/{tenant}/{name}", methods=["GET"], authorizer=IAMAuthorizer())
def game_state(tenant: str, name: str) -> Response:
    return _reply(wiring.container().game_api.state(tenant, name))


@app.route(
    "/internal/games/{tenant}/{name}/transition",
    methods=["POST"],
    authorizer=IAMAuthorizer(),
    content_types=["application/json"],
)
def game_transition(tenant: str, name: str) -> Response:
    req = app.current_request
    assert req is not None
    return _reply(wiring.container().game_api.transition(tenant, name, req.raw_body))


def _reply(reply: HttpReply) -> Response:
    return Response(body=reply.body.decode(), status_code=reply.status, headers=dict(reply.headers))


# -- EC2's own events: the Spot interruption warning starts the stop path at once ---------------------


@app.on_cw_event({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]})
def ec2_events(event: CloudWatchEvent) -> None:
    wiring.container().on_ec2_event(event.to_dict())
