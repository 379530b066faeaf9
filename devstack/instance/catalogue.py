"""A catalogue game on a booted instance: Luanti's server (Debian's `minetest-server`), installed by the
agent with apt from the local repository (aptrepo.py), the entry given to a booted instance outside the
stack. Used by tests/test_booted_catalogue.py (tests/test_booted_catalogue_life.py takes OpenArena's
entry through the stack instead).

`apply_entry()` turns the agent.toml the user data wrote into the entry's: the launch command and ports
replaced, `[install]` and `[ready]` added (what the backend's rendering of a catalogue entry writes);
the agent reads it at its next start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from chalicelib.lifecycle.bootstrap import MOUNTPOINT

__all__ = ["LUANTI_PACKAGES", "LUANTI_PORT", "apply_entry"]

LUANTI_PACKAGES: Final = ("minetest-server",)
LUANTI_PORT: Final = 30000  # UDP (minetest.conf.example, `port`)
_COMMAND: Final = (
    f'command = ["/usr/lib/minetest/minetestserver", "--world", "{MOUNTPOINT}/game/world", '
    f'"--gameid", "minetest", "--port", "{LUANTI_PORT}"]'
)
_ENTRY: Final = f"""
[install]
method = "apt"
packages = [{", ".join(f'"{p}"' for p in LUANTI_PACKAGES)}]
version = "1"

[ready]
signal = "port"
port = {LUANTI_PORT}
proto = "udp"
timeout_s = 300
"""


def apply_entry(root: Path) -> None:
    """Rewrite `<root>/etc/gangway/agent.toml` (a booted instance's, seen from this machine) for Luanti."""
    path = root / "etc/gangway/agent.toml"
    text = path.read_text()
    text = re.sub(r"^command = .*$", _COMMAND, text, count=1, flags=re.MULTILINE)
    ports = f"ports = {{ tcp = [], udp = [{LUANTI_PORT}] }}"
    text = re.sub(r"^ports = .*$", ports, text, count=1, flags=re.MULTILINE)
    path.write_text(text + "\n" + _ENTRY)
