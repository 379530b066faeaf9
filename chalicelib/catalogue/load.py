"""Reading the catalogue: `games/<id>.toml`, one file per game, checked key by key.

A broken entry fails with one `CatalogueError` naming its file and key, at import in tests (the schema
test loads every file), never at a user's `/newgame`. Unknown keys are refused too: a typo such as
`stop_sginal` would otherwise silently keep the default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from chalicelib.catalogue.entry import (
    FIELD_REF,
    Entry,
    FormField,
    Install,
    Launch,
    Ports,
    Query,
    Ready,
    Sizes,
)

__all__ = ["GAMES_DIR", "IMAGE_REFERENCE", "CatalogueError", "catalogue", "entry", "load_entry"]

GAMES_DIR: Final = Path(__file__).resolve().parent / "games"
_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,30}[a-z0-9]")
_ENV: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SIGNAL: Final = re.compile(r"SIG[A-Z0-9]{2,8}")
_DEB: Final = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_VERSION: Final = re.compile(r"[A-Za-z0-9._+-]{1,32}")
_INSTANCE: Final = re.compile(r"[a-z][a-z0-9]*\.[a-z0-9]+")
# Graviton families end in `g` (t4g, m7g, c7g…): the ones that boot the arm64 image.
_ARM_FAMILY: Final = re.compile(r"[a-z][0-9][a-z]*g[a-z]*\.[a-z0-9]+")
_METHODS: Final = ("apt", "podman", "steamcmd", "download")
_PROTOCOLS: Final = ("minecraft-java", "minecraft-bedrock", "a2s", "quake3", "none")
_SIGNALS: Final = ("query", "port", "log", "none")
# An image reference as the OCI distribution grammar defines it (github.com/distribution/reference,
# reference.go), with the registry's domain and a tag or digest required: podman must not guess either.
_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = rf"(?:{_COMPONENT}(?:\.{_COMPONENT})*\.[a-zA-Z]{{2,}}|localhost)(?::[0-9]+)?"
_PATH: Final = r"[a-z0-9]+(?:(?:[_.]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[_.]|__|[-]+)[a-z0-9]+)*)*"
IMAGE_REFERENCE: Final = re.compile(
    rf"(?P<name>{_DOMAIN}/{_PATH})(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?"
)
# A line sent to the game's console: one line, nothing that could end it early.
_CONSOLE_MAX: Final = 200
T = TypeVar("T")


class CatalogueError(ValueError):
    """A catalogue file breaks the schema: which file, which key, and what is wrong."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key} {problem}")
        self.file, self.key, self.problem = file, key, problem


class _Table:
    """One TOML table being read: every key read is ticked off, the rest are refused at `done()`."""

    def __init__(self, file: str, path: str, data: Mapping[str, Any]) -> None:
        self.file, self.path, self.data, self.seen = file, path, data, set[str]()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> CatalogueError:
        return CatalogueError(self.file, self.key(name), problem)

    def get(self, name: str, kind: type[T], default: T | None = None, *, required: bool = True) -> T:
        self.seen.add(name)
        if name not in self.data:
            if default is not None or not required:
                return cast(T, default)
            raise self.fail(name, "is missing")
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be {kind.__name__}, not {type(value).__name__}")
        return value

    def text(
        self, name: str, *, low: int = 1, high: int = 200, pattern: re.Pattern[str] | None = None
    ) -> str:
        value = self.get(name, str)
        if not low <= len(value) <= high:
            raise self.fail(name, f"must be {low} to {high} characters long")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(name, f"must match {pattern.pattern}, not {value!r}")
        return value

    def optional_text(
        self, name: str, *, high: int = 200, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        self.seen.add(name)
        return self.text(name, high=high, pattern=pattern) if name in self.data else None

    def optional_number(self, name: str, low: int, high: int) -> int | None:
        self.seen.add(name)
        return self.number(name, low, high) if name in self.data else None

    def optional_choice(self, name: str, options: tuple[str, ...]) -> str | None:
        self.seen.add(name)
        return self.choice(name, options) if name in self.data else None

    def number(self, name: str, low: int, high: int, default: int | None = None) -> int:
        value = self.get(name, int, default)
        if not low <= value <= high:
            raise self.fail(name, f"must be from {low} to {high}, not {value}")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str | None = None) -> str:
        value = self.get(name, str, default)
        if value not in options:
            raise self.fail(name, f"must be one of {', '.join(options)}, not {value!r}")
        return value

    def strings(self, name: str, check: Callable[[str], bool], what: str) -> tuple[str, ...]:
        values = self.get(name, list, [])
        for v in values:
            if not isinstance(v, str) or not check(v):
                raise self.fail(name, f"holds {v!r}, which is not {what}")
        return tuple(values)

    def ports(self, name: str) -> tuple[int, ...]:
        values = self.get(name, list, [])
        if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535 for v in values):
            raise self.fail(name, "must list port numbers from 1 to 65535")
        return tuple(values)

    def table(self, name: str, *, required: bool = True) -> _Table | None:
        value = self.get(name, dict, required=required)
        return None if value is None else _Table(self.file, self.key(name), value)

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise self.fail(extra[0], "is not a key the catalogue knows")


def _url(value: str) -> bool:
    return re.fullmatch(r"https://[A-Za-z0-9.-]+\.[a-z]{2,}(/[^\s]*)?", value) is not None


def _install(t: _Table) -> Install:
    method = t.choice("method", _METHODS)
    got = Install(
        method=method,  # type: ignore[arg-type]
        version=t.text("version", high=32, pattern=_VERSION),
        packages=t.strings("packages", lambda p: _DEB.fullmatch(p) is not None, "a Debian package name"),
        image=t.optional_text("image", high=255),
        app_id=t.optional_number("app_id", 1, 2**31),
        url=t.optional_text("url", high=500),
        sha256=t.optional_text("sha256", high=64, pattern=_SHA256),
        archive=t.optional_choice("archive", ("zip", "tar", "none")),  # type: ignore[arg-type]
        dir=t.optional_text("dir", high=200, pattern=re.compile(r"/srv/gangway/[A-Za-z0-9._/-]+")),
        mount=t.optional_text("mount", high=200, pattern=re.compile(r"/[A-Za-z0-9._/-]*")),
    )
    if got.mount is not None and method != "podman":
        raise t.fail("mount", "applies only to the podman method (where the data folder is in the image)")
    if got.image is not None:
        ref = IMAGE_REFERENCE.fullmatch(got.image)
        if ref is None or len(ref.group("name")) > 255 or not (ref.group("tag") or ref.group("digest")):
            raise t.fail("image", f"is not a full image reference (registry/name:tag), not {got.image!r}")
    needs = {"apt": "packages", "podman": "image", "steamcmd": "app_id", "download": "url"}[method]
    if not getattr(got, needs):
        raise t.fail(needs, f"is needed for the {method} method")
    if method == "download" and (got.sha256 is None or not _url(got.url or "")):
        raise t.fail("sha256", "and an https url are needed for a download")
    t.done()
    return got


def _launch(t: _Table, *, image: bool) -> Launch:
    """`image`: a podman install, whose command is the image's arguments (it may have none)."""
    command = t.strings("command", lambda a: 0 < len(a) <= 500, "an argument")
    if not command and not image:
        raise t.fail("command", "must name the program to run")
    if image and command[:1] == ("podman",):
        raise t.fail("command", "holds the image's arguments only: the agent runs the image with podman")
    env_table = t.table("env", required=False)
    env: list[tuple[str, str]] = []
    if env_table is not None:
        for k in env_table.data:
            if not _ENV.fullmatch(k):
                raise env_table.fail(k, "is not an environment variable name")
            env.append((k, env_table.text(k, low=0, high=500)))
        env_table.done()
    one_line = re.compile(rf"[^\n\r]{{1,{_CONSOLE_MAX}}}")
    got = Launch(
        command=command,
        env=tuple(env),
        stop_signal=t.get("stop_signal", str, "SIGTERM"),
        stop_grace_s=t.number("stop_grace_s", 1, 3600, 60),
        console_save=t.optional_text("console_save", high=_CONSOLE_MAX, pattern=one_line),
        console_stop=t.optional_text("console_stop", high=_CONSOLE_MAX, pattern=one_line),
    )
    if not _SIGNAL.fullmatch(got.stop_signal):
        raise t.fail("stop_signal", f"must be a signal name such as SIGTERM, not {got.stop_signal!r}")
    t.done()
    return got


def _form(file: str, items: list[Any]) -> tuple[FormField, ...]:
    fields: list[FormField] = []
    for i, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise CatalogueError(file, f"form[{i}]", "must be a table")
        t = _Table(file, f"form[{i}]", raw)
        kind = t.choice("type", ("string", "integer"))
        low, high = t.number("min", 0, 10**9), t.number("max", 1, 10**9)
        f = FormField(
            id=t.text("id", high=32, pattern=re.compile(r"[a-z][a-z0-9_]{0,31}")),
            label=t.text("label", high=45),  # Discord: a text input's label is at most 45 characters
            type=kind,  # type: ignore[arg-type]
            default=str(t.get("default", int if kind == "integer" else str)),
            min=low,
            max=high,
            env=t.optional_text("env", high=64, pattern=_ENV),
            required=t.get("required", bool, True),
        )
        if low > high:
            raise t.fail("min", "is above max")
        try:
            f.check(f.default)
        except ValueError as exc:
            raise t.fail("default", f"breaks its own limits ({exc})") from None
        t.done()
        fields.append(f)
    ids = [f.id for f in fields]
    if len(set(ids)) != len(ids):
        raise CatalogueError(file, "form", "names one id twice")
    return tuple(fields)


def _ports(t: _Table) -> Ports:
    ports = Ports(t.ports("tcp"), t.ports("udp"), t.text("source", high=300))
    if not _url(ports.source):
        raise t.fail("source", "must be the https address of a page that documents the ports")
    if not ports.tcp and not ports.udp:
        raise t.fail("tcp", "and udp are both empty: players need a port")
    t.done()
    return ports


def _query(t: _Table) -> Query:
    query = Query(
        protocol=t.choice("protocol", _PROTOCOLS),  # type: ignore[arg-type]
        port=t.number("port", 1, 65535),
        host=t.get("host", str, "127.0.0.1"),
        interval_s=t.number("interval_s", 5, 3600, 30),
    )
    t.done()
    return query


def _ready(t: _Table, query: Query | None) -> Ready:
    ready = Ready(
        signal=t.choice("signal", _SIGNALS),  # type: ignore[arg-type]
        port=t.optional_number("port", 1, 65535),
        proto=t.choice("proto", ("tcp", "udp"), "tcp"),  # type: ignore[arg-type]
        pattern=t.optional_text("pattern", high=200),
        timeout_s=t.number("timeout_s", 10, 7200, 900),
    )
    if ready.signal == "query" and (query is None or query.protocol == "none"):
        raise t.fail("signal", "is query but the entry has no [query] protocol")
    if ready.signal == "port" and ready.port is None:
        raise t.fail("port", "is needed for the port signal")
    if ready.signal == "log":
        if not ready.pattern:
            raise t.fail("pattern", "is needed for the log signal")
        try:
            re.compile(ready.pattern)
        except re.error as exc:
            raise t.fail("pattern", f"is not a regular expression ({exc})") from None
    t.done()
    return ready


def _check_refs(file: str, t: _Table, launch: Launch, form: tuple[FormField, ...]) -> None:
    """Every `{field}` names a form field, and every field reaches the game (env or `{field}`)."""
    texts = (*launch.command, *(v for _, v in launch.env))
    ids = {f.id for f in form}
    for text in texts:
        for ref in FIELD_REF.findall(text):
            if ref not in ids:
                raise t.fail("command", f"uses {{{ref}}}, which no form field defines")
    for f in form:
        if not f.env and not any(f"{{{f.id}}}" in text for text in texts):
            raise CatalogueError(file, f"form.{f.id}", "reaches the game neither by env nor in launch")


def _sizes(t: _Table) -> Sizes:
    sizes = Sizes(
        x86=t.text("x86", high=32, pattern=_INSTANCE),
        memory_gb=t.get("memory_gb", float),
        disk_gb=t.number("disk_gb", 8, 1024),
        arm64=t.optional_text("arm64", high=32, pattern=_ARM_FAMILY),
    )
    if _ARM_FAMILY.fullmatch(sizes.x86):
        raise t.fail("x86", f"names {sizes.x86}, an arm64 (Graviton) type")
    t.done()
    return sizes


def load_entry(path: Path) -> Entry:
    """One catalogue file, checked.

    Raises:
        CatalogueError: the file is not TOML or breaks the schema (the message names file and key).
    """
    file = path.name
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(file, "(file)", f"is not TOML: {exc}") from None
    t = _Table(file, "", data)
    game_id = t.text("id", high=32, pattern=_ID)
    if path.stem != game_id:
        raise t.fail("id", f"must be the file's name ({path.stem})")
    install = _install(cast(_Table, t.table("install")))
    launch_t = cast(_Table, t.table("launch"))
    launch = _launch(launch_t, image=install.method == "podman")
    ports = _ports(cast(_Table, t.table("ports")))
    query_t = t.table("query", required=False)
    query = _query(query_t) if query_t is not None else None
    ready = _ready(cast(_Table, t.table("ready")), query)
    form = _form(file, t.get("form", list, []))
    _check_refs(file, launch_t, launch, form)
    sizes = _sizes(cast(_Table, t.table("sizes")))
    connect = t.text("connect", high=200)
    connect_port = t.number("connect_port", 1, 65535)
    if connect_port not in (*ports.tcp, *ports.udp):
        raise t.fail("connect_port", "must be one of the entry's ports")
    got = Entry(
        id=game_id,
        name=t.text("name", high=60),
        description=t.text("description", high=100),  # an autocomplete choice's name holds 100
        install=install,
        launch=launch,
        ports=ports,
        query=query,
        ready=ready,
        form=form,
        sizes=sizes,
        connect=connect,
        join=t.text("join", high=1000),
        connect_port=connect_port,
    )
    t.done()
    return got


@lru_cache(maxsize=1)
def catalogue(directory: Path = GAMES_DIR) -> tuple[Entry, ...]:
    """Every entry, by name (read once per process).

    Raises:
        CatalogueError: a file breaks the schema.
    """
    return tuple(sorted((load_entry(p) for p in directory.glob("*.toml")), key=lambda e: e.name.lower()))


def entry(game_id: str) -> Entry | None:
    """The entry of that id, or None."""
    return next((e for e in catalogue() if e.id == game_id), None)
