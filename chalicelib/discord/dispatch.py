"""Route a parsed interaction to its handler, re-checking access every time (registration is a hint).

Commands go by name, components and modals by the `domain:action` prefix of their custom_id,
autocomplete by the focused option's provider. A `Deferred` result is queued here, before the
endpoint answers, so an acknowledged interaction always has its job on the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from chalicelib.discord.commands import CommandRegistry, Level
from chalicelib.discord.interaction import Interaction, parse_interaction
from chalicelib.discord.payloads import InteractionType, Permission
from chalicelib.discord.replies import (
    Choices,
    Deferred,
    Modal,
    Reply,
    Response,
    Update,
    callback_body,
    error_reply,
)
from chalicelib.errors import Forbidden, NotFound, NotSetUp, UserError, ValidationError
from chalicelib.http import HttpReply
from chalicelib.tracing import Tracer

__all__ = ["Caller", "Dispatcher", "JobSink", "has_permission"]

log = logging.getLogger(__name__)

_PERMISSION_WORDS = {Permission.MANAGE_GUILD: "Manage Server", Permission.ADMINISTRATOR: "Administrator"}


class Caller(Protocol):
    """What dispatch needs to know about whoever sent the interaction."""

    @property
    def interaction(self) -> Interaction: ...

    @property
    def level(self) -> Level: ...

    @property
    def has_tenant(self) -> bool: ...


class JobSink(Protocol):
    """Where deferred work goes (the jobs queue)."""

    def enqueue(self, caller: Caller, deferred: Deferred, trace_header: str | None) -> None: ...


def has_permission(granted: int, needed: Permission) -> bool:
    """Discord's rule: ADMINISTRATOR implies every permission (discord-protocol.md §7)."""
    return bool(granted & Permission.ADMINISTRATOR) or (granted & needed) == needed


class Dispatcher:
    """Turns an interaction into a `Response` by calling the right handler."""

    def __init__(
        self,
        registry: CommandRegistry,
        caller_for: Callable[[Interaction], Caller],
        jobs: JobSink,
        tracer: Tracer,
    ) -> None:
        self._registry = registry
        self._caller_for = caller_for
        self._jobs = jobs
        self._tracer = tracer

    def answer(self, payload: object) -> HttpReply:
        """Parse, dispatch and encode; errors after parsing become ephemeral messages, never a 500.

        Raises:
            BadRequest: the payload is not an interaction.
        """
        it = parse_interaction(payload)
        resp: Response
        with self._tracer.segment("interaction"):
            try:
                resp = self.dispatch(it)
            except UserError as exc:
                resp = error_reply(exc)
            except Exception as exc:
                log.exception("interaction %s (%s) failed", it.id, it.command or it.custom_id)
                resp = error_reply(exc)
        resp = _fit(it.type, resp)
        return HttpReply.json(200, callback_body(resp))

    def dispatch(self, it: Interaction) -> Response:
        """Answer one interaction; user errors are rendered by the endpoint."""
        name = it.command or it.custom_id.split(":", 2)[0]
        with self._tracer.span(f"{it.type.name.lower()}:{name[:40]}") as span:
            span.annotate("tenant", it.guild_id or "-")
            span.annotate("command", name[:100])
            caller = self._caller_for(it)  # one per interaction: its tenant and level are read once
            try:
                resp = self._route(caller)
            except UserError as exc:
                span.annotate("outcome", type(exc).__name__)
                raise
            except Exception:
                span.annotate("outcome", "error")
                raise
            span.annotate("deferred", isinstance(resp, Deferred))
            span.annotate("outcome", "ok")
            if isinstance(resp, Deferred):
                self._jobs.enqueue(caller, resp, self._tracer.trace_header())
            return resp

    def _route(self, caller: Caller) -> Response:
        it = caller.interaction
        if it.type is InteractionType.APPLICATION_COMMAND:
            return self._command(caller)
        if it.type is InteractionType.AUTOCOMPLETE:
            return self._autocomplete(caller)
        found = self._registry.find_route(it.custom_id)
        if found is None:
            raise NotFound(
                "That button or form belongs to something gangway no longer knows "
                "(it may be from an older message). Run the command again."
            )
        route, args = found
        self._authorise(caller, route.level, route.permission, needs_tenant=True, what="this")
        return route.callback(caller, *args)

    def _command(self, caller: Caller) -> Response:
        it = caller.interaction
        cmd = self._registry.by_name(it.command)
        if cmd is None:
            raise NotFound(
                f"gangway doesn't know the command `/{it.command}` (it may have been removed). "
                "Use /help to see what you can run."
            )
        self._authorise(caller, cmd.level, cmd.permission, needs_tenant=cmd.needs_tenant, what=f"/{cmd.name}")
        kwargs: dict[str, object] = {}
        for opt in cmd.options:
            if opt.name not in it.options:
                if opt.required:
                    raise ValidationError(f"`{opt.name}` is required. Usage: `{cmd.usage}`")
                continue
            problem = opt.check(it.options[opt.name])
            if problem:
                raise ValidationError(f"{problem}. Usage: `{cmd.usage}`")
            kwargs[opt.param] = it.options[opt.name]
        return cmd.callback(caller, **kwargs)

    def _autocomplete(self, caller: Caller) -> Choices:
        it = caller.interaction
        cmd = self._registry.by_name(it.command)
        opt = cmd.option(it.focused) if cmd and it.focused else None
        if cmd is None or opt is None or opt.autocomplete is None:
            return Choices()
        provider = self._registry.providers.get(opt.autocomplete.provider)
        try:
            self._authorise(caller, cmd.level, cmd.permission, needs_tenant=cmd.needs_tenant, what="")
        except UserError:
            return Choices()  # never suggest a tenant's names to someone who may not use the command
        partial = it.options.get(opt.name, "")
        return provider(caller, str(partial)) if provider else Choices()

    @staticmethod
    def _authorise(
        caller: Caller, level: Level, permission: Permission | None, *, needs_tenant: bool, what: str
    ) -> None:
        if permission is not None and not has_permission(caller.interaction.permissions, permission):
            words = _PERMISSION_WORDS.get(permission, permission.name or "a special")
            raise Forbidden(f"You need the **{words}** permission to use {what}.")
        if needs_tenant and caller.interaction.guild_id is None:
            raise NotSetUp("gangway works inside a Discord server: use its commands there, not in DMs.")
        if needs_tenant and not caller.has_tenant:
            raise NotSetUp(
                "This server isn't set up for gangway yet. Someone with the **Manage Server** "
                "permission can run `/setup` to connect it."
            )
        if caller.level < level:
            raise Forbidden(
                f"{what} is for the server's **{level.label}** role. Ask an admin if you need access; "
                "`/help` lists what you can use."
            )


def _fit(kind: InteractionType, resp: Response) -> Response:
    """Coerce a response into one Discord accepts for this interaction type (§3.2)."""
    if kind is InteractionType.AUTOCOMPLETE:
        return resp if isinstance(resp, Choices) else Choices()
    if isinstance(resp, Choices):
        return Reply(content="Nothing to show.", ephemeral=True)
    if isinstance(resp, Update) and kind is InteractionType.APPLICATION_COMMAND:
        return Reply(content=resp.content, embeds=resp.embeds, components=resp.components, ephemeral=True)
    if isinstance(resp, Modal) and kind is InteractionType.MODAL_SUBMIT:
        return Reply(content="That form can't open another form.", ephemeral=True)
    return resp
