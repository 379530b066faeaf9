"""A booted Debian 12 instance on this machine (systemd-nspawn): the instance side of the local stack,
as close to EC2's first boot as anything here can be (DESIGN.md §2, "the instance is a booted Debian 12
system")."""

from devstack.instance.rootfs import PACKAGES, RootFs, build_rootfs

__all__ = ["PACKAGES", "RootFs", "build_rootfs"]
