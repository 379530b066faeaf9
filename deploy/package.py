"""Split Chalice's one deployment zip: what every function loads, and web push's layer.

`chalice package` vendors every requirement into one zip that all functions share. Two kinds of it
do not belong there:

- what the Lambda Python runtime already has (boto3, botocore and their dependencies: PynamoDB and
  the X-Ray SDK pull botocore in, 21 MB) is dropped;
- what only web push needs (pywebpush and what it alone requires: cryptography, aiohttp, requests…,
  22 MB) goes to `push-layer.zip`, a Lambda layer only the steps function (which sends the pushes,
  chalicelib/push/sender.py) carries (deploy/template/functions.py).

Which distribution a file belongs to is read from the `*.dist-info/RECORD` files in the zip, and what
a distribution requires from its METADATA, so a new dependency lands on the right side by itself.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "LAYER_ZIP",
    "PUSH_ROOT",
    "RUNTIME_DISTRIBUTIONS",
    "PackageSizes",
    "requirement_names",
    "sizes",
    "split",
]

LAYER_ZIP: Final = "push-layer.zip"
PUSH_ROOT: Final = "pywebpush"
# The Lambda Python runtime's own packages (its boto3 and what boto3 requires).
RUNTIME_DISTRIBUTIONS: Final = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
_LAYER_PREFIX: Final = "python/"  # where Lambda puts a layer's Python packages on sys.path
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same inputs give the same zip
_REQUIRES: Final = re.compile(r"^Requires-Dist:[ \t]*([A-Za-z0-9][A-Za-z0-9._-]*)([^;\n]*)(;(.*))?$", re.M)


@dataclass(frozen=True)
class PackageSizes:
    """Bytes of the function package and the layer, unpacked and zipped."""

    function_unpacked: int
    function_zipped: int
    layer_unpacked: int
    layer_zipped: int


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions(zf: zipfile.ZipFile) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(files of each distribution, distributions each one requires) from the zip's dist-info."""
    files: dict[str, set[str]] = {}
    requires: dict[str, set[str]] = {}
    for name in zf.namelist():
        parts = name.split("/")
        if len(parts) != 2 or not parts[0].endswith(".dist-info"):
            continue
        dist = _norm(parts[0][: -len(".dist-info")].rsplit("-", 1)[0])
        if parts[1] == "RECORD":
            rows = zf.read(name).decode().splitlines()
            files[dist] = {row.split(",")[0] for row in rows if row} | {name}
        elif parts[1] == "METADATA":
            needed = set()
            for m in _REQUIRES.finditer(zf.read(name).decode()):
                if "extra" not in (m.group(4) or ""):  # extras are not installed
                    needed.add(_norm(m.group(1)))
            requires[dist] = needed
    return files, requires


def _closure(roots: Iterable[str], requires: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [_norm(r) for r in roots]
    while todo:
        dist = todo.pop()
        if dist not in seen:
            seen.add(dist)
            todo.extend(requires.get(dist, ()))
    return seen


def requirement_names(path: Path) -> list[str]:
    """The distributions a requirements file names (`name==version  # comment` lines)."""
    names = []
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if m:
            names.append(m.group(1))
    return names


def split(package: Path, requirements: Iterable[str]) -> PackageSizes:
    """Rewrite `package` without the runtime's distributions and web push's; write those of web push
    into LAYER_ZIP beside it. `requirements`: the top-level distributions (requirements.txt)."""
    with zipfile.ZipFile(package) as zf:
        files, requires = _distributions(zf)
        others = _closure((r for r in requirements if _norm(r) != PUSH_ROOT), requires)
        push_only = _closure([PUSH_ROOT], requires) - others - RUNTIME_DISTRIBUTIONS
        dropped = {f for d in RUNTIME_DISTRIBUTIONS for f in files.get(d, ())}
        to_layer = {f for d in push_only for f in files.get(d, ())}
        members = [(info, zf.read(info)) for info in zf.infolist() if not info.is_dir()]
    layer = package.with_name(LAYER_ZIP)
    tmp = package.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as fn, zipfile.ZipFile(layer, "w") as ly:
        for info, data in members:
            if info.filename in dropped:
                continue
            pushed = info.filename in to_layer
            into, name = (ly, _LAYER_PREFIX + info.filename) if pushed else (fn, info.filename)
            out = zipfile.ZipInfo(name, date_time=_EPOCH)
            out.external_attr = info.external_attr
            out.compress_type = zipfile.ZIP_DEFLATED
            into.writestr(out, data)
    tmp.replace(package)
    return sizes(package)


def sizes(package: Path) -> PackageSizes:
    """The sizes of a split package and its layer (the layer counted as empty when absent)."""
    layer = package.with_name(LAYER_ZIP)

    def unpacked(path: Path) -> int:
        with zipfile.ZipFile(path) as zf:
            return sum(i.file_size for i in zf.infolist())

    has_layer = layer.exists()
    return PackageSizes(
        function_unpacked=unpacked(package),
        function_zipped=package.stat().st_size,
        layer_unpacked=unpacked(layer) if has_layer else 0,
        layer_zipped=layer.stat().st_size if has_layer else 0,
    )
