"""Growing and preloading the data volume: exact commands through a scripted runner, reads on a real file."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import ScriptedRunner

from gangway_agent import disk
from gangway_agent.errors import CommandFailed, RequestFailed
from gangway_agent.seams import Completed


def _lsblk(part_size: int, *, fstype: str = "ext4", partitioned: bool = True) -> Completed:
    part: dict[str, Any] = {"name": "nvme1n1p1", "path": "/dev/nvme1n1p1", "pkname": "nvme1n1",
                            "type": "part", "mountpoint": "/srv/gangway", "fstype": fstype, "size": part_size}
    root_part = {"name": "nvme0n1p1", "path": "/dev/nvme0n1p1", "pkname": "nvme0n1", "type": "part",
                 "mountpoint": "/", "fstype": "ext4", "size": 8 << 30}
    root: dict[str, Any] = {"name": "nvme0n1", "path": "/dev/nvme0n1", "pkname": None, "type": "disk",
                            "mountpoint": None, "fstype": None, "size": 8 << 30, "children": [root_part]}
    if partitioned:
        data = {"name": "nvme1n1", "path": "/dev/nvme1n1", "pkname": None, "type": "disk", "mountpoint": None,
                "fstype": None, "size": 20 << 30, "children": [part]}
    else:
        data = {"name": "nvme1n1", "path": "/dev/nvme1n1", "pkname": None, "type": "disk",
                "mountpoint": "/srv/gangway", "fstype": fstype, "size": part_size}
    out = json.dumps({"blockdevices": [root, data]})
    return Completed(("lsblk",), 0, out, "")


def test_extend_partitioned_ext4() -> None:
    runner = ScriptedRunner()
    runner.on(["lsblk"], _lsblk(10 << 30), _lsblk(20 << 30))
    result = disk.extend(runner, Path("/srv/gangway"))
    assert runner.argvs()[1:3] == [("growpart", "/dev/nvme1n1", "1"), ("resize2fs", "/dev/nvme1n1p1")]
    assert result == {"device": "/dev/nvme1n1p1", "partition": 1, "filesystem": "ext4",
                      "size_before_bytes": 10 << 30, "size_after_bytes": 20 << 30}


def test_extend_whole_disk_xfs_skips_growpart() -> None:
    runner = ScriptedRunner()
    runner.on(["lsblk"], _lsblk(20 << 30, fstype="xfs", partitioned=False))
    result = disk.extend(runner, Path("/srv/gangway"))
    assert [a[0] for a in runner.argvs()] == ["lsblk", "xfs_growfs", "lsblk"]
    assert runner.argvs()[1] == ("xfs_growfs", "/srv/gangway") and result["partition"] is None


def test_growpart_nochange_is_fine_and_real_failures_are_errors() -> None:
    runner = ScriptedRunner()
    runner.on(["lsblk"], _lsblk(20 << 30))
    nochange = "NOCHANGE: partition 1 is size 41940959. it cannot be grown"
    runner.on(["growpart"], Completed(("growpart",), 1, nochange, ""))
    assert disk.extend(runner, Path("/srv/gangway"))["size_after_bytes"] == 20 << 30
    failing = ScriptedRunner()
    failing.on(["lsblk"], _lsblk(20 << 30))
    failing.on(["growpart"], Completed(("growpart",), 2, "", "FAILED: disk /dev/nvme1n1 does not exist"))
    with pytest.raises(CommandFailed, match="does not exist"):
        disk.extend(failing, Path("/srv/gangway"))
    nothing = ScriptedRunner()
    nothing.on(["lsblk"], Completed(("lsblk",), 0, '{"blockdevices": []}', ""))
    with pytest.raises(RequestFailed, match="no block device mounted at /data"):
        disk.extend(nothing, Path("/data"))


def test_preload_reads_every_block_with_progress(tmp_path: Path) -> None:
    image = tmp_path / "volume.img"
    size = 5 * 1024 * 1024 + 123
    image.write_bytes(os.urandom(size))
    ticks = iter(range(1000))
    seen: list[tuple[int, int]] = []
    done, _secs = disk.preload(image, block_size=1 << 20, progress=lambda n, t: seen.append((n, t)),
                               every_s=2, clock=lambda: float(next(ticks)))
    assert done == size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert len(seen) >= 3 and all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    with pytest.raises(RequestFailed, match="cannot open"):
        disk.preload(tmp_path / "missing", block_size=4096, progress=lambda n, t: None)


def test_preload_request_emits_progress_and_done(tmp_path: Path) -> None:
    from test_agent_requests import make_agent

    image = tmp_path / "data.img"
    image.write_bytes(b"\0" * (3 << 20))
    h, agent = make_agent(tmp_path, top={"data": {"mountpoint": str(tmp_path), "device": str(image)}})
    try:
        reply = h.ask("disk.preload", {"block_size": 1 << 20})
        assert reply["body"] == {"started": True, "device": str(image)}
        done = h.event("preload.done")
        assert done["body"]["bytes_read"] == 3 << 20
        assert h.event("preload.progress")["body"]["bytes_total"] == 3 << 20
    finally:
        agent.close()


def test_usage_of_a_path(tmp_path: Path) -> None:
    used = disk.usage(tmp_path)
    assert used is not None and used.total_bytes >= used.free_bytes > 0
    assert disk.usage(tmp_path / "nope") is None
