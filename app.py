"""gangway's Chalice app: a switchboard of routes and event bindings (lesson L1).

Each binding hands the request or event to an object built in `chalicelib.wiring`.
"""

from __future__ import annotations

from chalice.app import Chalice, Response, SQSEvent

from chalicelib import wiring
from chalicelib.config import settings

app = Chalice(app_name="gangway")


@app.route("/discord/interactions", methods=["POST"], content_types=["application/json"])
def interactions() -> Response:
    req = app.current_request
    assert req is not None  # Chalice sets it for every route call
    reply = wiring.container().endpoint.handle(req.raw_body, req.headers)
    return Response(body=reply.body.decode(), status_code=reply.status, headers=dict(reply.headers))


@app.on_sqs_message(queue=settings().jobs_queue, batch_size=1)
def jobs(event: SQSEvent) -> None:
    for record in event:
        attrs = record.to_dict().get("attributes", {})
        receives = int(attrs.get("ApproximateReceiveCount", "1"))
        wiring.container().job_runner.run(record.body, receives, attrs.get("AWSTraceHeader"))
