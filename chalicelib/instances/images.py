"""The machine image a game instance boots: resolved at launch, never written into the code.

DESIGN.md §4: Debian 12 from the publisher's public SSM parameter for the instance type's architecture
(`x86_64` → `amd64`, `arm64` → `arm64`, so Graviton types work), and the image's owner checked against
the publisher's account before anything launches from it: a parameter or image that someone else
answers for is refused, never booted with the game's data and the agent's key on it. A deployment may
pin another parameter or one image (`IMAGE_PARAMETER`, `IMAGE_ID`, `IMAGE_OWNER`: config.py); a pinned
image is owner-checked too.

The parameter and the image live in the tenant's account and region, so the clients come from the
credentials broker (`TenantGateways.images`). What was resolved is cached per container for an hour:
a start does not pay three extra calls, and a new Debian release is picked up within the hour.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.errors import InfraError
from chalicelib.instances.aws_errors import error_code

if TYPE_CHECKING:
    from chalicelib.config import Settings

__all__ = [
    "ARCH_NAMES",
    "CACHE_SECONDS",
    "Image",
    "ImageCache",
    "ImageConfig",
    "ImageRefused",
    "ImageResolver",
    "OwnerMismatch",
    "image_for",
    "image_ids",
    "resolve_image",
]

# EC2's architecture names → the publisher's, as its parameter paths spell them.
ARCH_NAMES: Final = {"x86_64": "amd64", "arm64": "arm64"}
# How long a container trusts what it resolved (the publisher moves `latest` every few weeks).
CACHE_SECONDS: Final = 3600.0
_ARCH_PLACEHOLDER: Final = "{arch}"


class ImageRefused(InfraError):
    """No image gangway trusts for this launch: the owner check failed, or nothing could be resolved."""


class OwnerMismatch(ImageRefused):
    """The image is not the configured publisher's: never skipped over, always refused."""


@dataclass(frozen=True)
class ImageConfig:
    """Where images come from: a parameter path with `{arch}`, the owner to demand, an optional pin."""

    parameter: str
    owner: str
    pinned: str = ""

    @classmethod
    def of(cls, settings: Settings) -> ImageConfig:
        return cls(settings.image_parameter, settings.image_owner, settings.image_id)


@dataclass(frozen=True)
class Image:
    """An image a launch may use: its id, its EC2 architecture, and where it came from (in words)."""

    image_id: str
    architecture: str
    source: str


class ImageCache:
    """Values with an expiry, shared by every resolver of one container (thread-safe: the local
    stack's pump runs steps on threads)."""

    def __init__(self, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._values.get(key)
            if found is None or found[0] <= self._clock():
                return None
            return found[1]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._values[key] = (self._clock() + self._ttl, value)


def _architecture(ec2: Any, instance_type: str) -> str:
    """The EC2 architecture gangway boots on `instance_type` (x86_64 or arm64).

    Raises:
        ImageRefused: EC2 does not know the type, or it runs neither architecture.
    """
    try:
        answer = ec2.describe_instance_types(InstanceTypes=[instance_type])
    except Exception as exc:
        if error_code(exc) in {"InvalidInstanceType", "InvalidParameterValue"}:
            raise ImageRefused(f"AWS does not offer the instance type `{instance_type}` here") from exc
        raise
    for info in answer.get("InstanceTypes", []):
        supported = info.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
        for arch in ARCH_NAMES:
            if arch in supported:
                return arch
    raise ImageRefused(f"`{instance_type}` runs neither x86_64 nor arm64, so no Debian image fits it")


def _parameter_value(ssm: Any, name: str) -> str:
    try:
        return str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            raise ImageRefused(f"the image parameter `{name}` does not exist in this region") from exc
        raise


def _checked(ec2: Any, image_id: str, *, architecture: str, owner: str, source: str) -> Image:
    """The image, once EC2 says it exists, is available, is `owner`'s and runs on `architecture`.

    Raises:
        ImageRefused: any of those is not so.
    """
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except Exception as exc:
        if error_code(exc) in {"InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"}:
            raise ImageRefused(f"the machine image `{image_id}` ({source}) does not exist here") from exc
        raise
    if not images:
        raise ImageRefused(f"the machine image `{image_id}` ({source}) does not exist here")
    found = images[0]
    if not owner or str(found.get("OwnerId", "")) != owner:
        raise OwnerMismatch(
            f"the machine image `{image_id}` ({source}) belongs to account "
            f"{found.get('OwnerId', 'unknown')}, not to the image publisher's account "
            f"{owner or '(none configured: set IMAGE_OWNER)'}; "
            "gangway will not boot a game from it"
        )
    if found.get("State", "available") != "available":
        raise ImageRefused(
            f"the machine image `{image_id}` ({source}) is {found.get('State')}, not available"
        )
    if found.get("Architecture") and found["Architecture"] != architecture:
        raise ImageRefused(
            f"the machine image `{image_id}` ({source}) is built for {found['Architecture']}, "
            f"not for {architecture}"
        )
    return Image(image_id, architecture, source)


def resolve_image(ec2: Any, ssm: Any, instance_type: str, config: ImageConfig) -> Image:
    """The owner-checked image for `instance_type`: the pinned one, else the parameter's for its
    architecture. `ec2` and `ssm` are clients in the tenant's account and region.

    Raises:
        ImageRefused: unknown type, missing parameter or image, wrong owner or architecture.
    """
    architecture = _architecture(ec2, instance_type)
    return image_for(ec2, ssm, architecture, config)


def image_for(ec2: Any, ssm: Any, architecture: str, config: ImageConfig) -> Image:
    """The owner-checked image for an EC2 `architecture` (`x86_64`, `arm64`): what a launch on that
    architecture would boot (`gangway doctor` asks this before any launch).

    Raises:
        ImageRefused: missing parameter or image, wrong owner or architecture.
    """
    if config.pinned:
        return _checked(
            ec2, config.pinned, architecture=architecture, owner=config.owner, source="pinned by IMAGE_ID"
        )
    name = config.parameter.replace(_ARCH_PLACEHOLDER, ARCH_NAMES[architecture])
    image_id = _parameter_value(ssm, name)
    return _checked(ec2, image_id, architecture=architecture, owner=config.owner, source=f"from {name}")


class ImageResolver:
    """`resolve_image` for one tenant's account and region, with the container's cache.

    `ec2` and `ssm` build the (audited) clients on first use; `scope` names the account and region, so
    two tenants in different places never share an answer; `cache=None` resolves afresh every time
    (the onboarding dry run checks the account as it is now).
    """

    def __init__(
        self,
        ec2: Callable[[], Any],
        ssm: Callable[[], Any],
        config: ImageConfig,
        *,
        scope: str,
        cache: ImageCache | None = None,
    ) -> None:
        self._ec2_factory, self._ssm_factory = ec2, ssm
        self._ec2: Any = None
        self._ssm: Any = None
        self._config = config
        self._scope = scope
        self._cache = cache

    def _clients(self) -> tuple[Any, Any]:
        if self._ec2 is None:
            self._ec2, self._ssm = self._ec2_factory(), self._ssm_factory()
        return self._ec2, self._ssm

    def architecture(self, instance_type: str) -> str:
        """x86_64 or arm64 (an instance type's architecture is the same in every account and region)."""
        key = ("architecture", instance_type)
        cached = self._cache.get(key) if self._cache else None
        if isinstance(cached, str):
            return cached
        arch = _architecture(self._clients()[0], instance_type)
        if self._cache:
            self._cache.put(key, arch)
        return arch

    def image(self, instance_type: str) -> Image:
        """The owner-checked image for `instance_type` (see `resolve_image`).

        Raises:
            ImageRefused: as `resolve_image`; a refusal is never cached.
        """
        architecture = self.architecture(instance_type)
        key = ("image", self._scope, self._config, architecture)
        cached = self._cache.get(key) if self._cache else None
        if isinstance(cached, Image):
            return cached
        ec2, ssm = self._clients()
        image = image_for(ec2, ssm, architecture, self._config)
        if self._cache:
            self._cache.put(key, image)
        return image

    def for_types(self, instance_types: Iterable[str]) -> dict[str, Image]:
        """An image for every type it can give one, in order; a pinned image's architecture leaves the
        other architecture's types out.

        Raises:
            ImageRefused: the first type (the game's own) has none, or any image fails the owner check.
        """
        found: dict[str, Image] = {}
        first: ImageRefused | None = None
        for n, instance_type in enumerate(dict.fromkeys(instance_types)):
            try:
                found[instance_type] = self.image(instance_type)
            except ImageRefused as exc:
                if n == 0 or isinstance(exc, OwnerMismatch):
                    raise
                first = first or exc
        if not found and first:
            raise first
        return found


def image_ids(images: Mapping[str, Image]) -> dict[str, str]:
    """Instance type → image id, as `Ec2Gateway.run` takes them."""
    return {t: i.image_id for t, i in images.items()}
