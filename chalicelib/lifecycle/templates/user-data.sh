#!/bin/bash
# gangway instance bootstrap (rendered by chalicelib/lifecycle/bootstrap.py; placeholder fields are filled
# in there, $$$$ is a literal dollar). Runs once, as root, at first boot (cloud-init user data).
# 1. mount the game's data volume (format only if blank)  2. install the agent in its own venv from the
# deployment's wheelhouse (hashes required; kept on the data disk for the next start), ship the journal to
# CloudWatch  3. fetch this instance's IoT certificate and key from SSM Parameter Store
# (SecureString, readable only by this instance's role)  4. write /etc/gangway/agent.toml  5. run the
# agent under systemd. Any failure stops here, non-zero, with "gangway bootstrap FAILED" in the log.
set -euo pipefail

TENANT=${tenant_q}
GAME=${game_q}
VOLUME_ID=${volume_id_q}
PARAMS=${parameter_prefix_q}
# The agent's wheelhouse (deploy/wheelhouse.py): a presigned URL of the archive and the archive's sha256.
AGENT_URL=${agent_url_q}
AGENT_SHA256=${agent_sha256}
LOG_GROUP=${log_group_q}
# Tests only (tests/test_instance_bootstrap.py): a throw-away root under which every path written here
# lies, and stand-ins for the metadata service and the CA's site. Unset on an instance.
R=$${GANGWAY_BOOT_ROOT:-}
IMDS=$${GANGWAY_IMDS_URL:-http://169.254.169.254}
CA_URL=$${GANGWAY_CA_URL:-https://www.amazontrust.com/repository/AmazonRootCA1.pem}
DEV_DIR=$$R/dev

mkdir -p "$$R/var/log"
exec > >(tee -a "$$R/var/log/gangway-bootstrap.log") 2>&1
on_exit() {
  local rc=$$?
  [ "$$rc" -eq 0 ] || echo "gangway bootstrap FAILED (exit $$rc); the lines above say where" >&2
}
trap on_exit EXIT
echo "gangway bootstrap: $$TENANT/$$GAME"

imds() {
  local token
  token=$$(curl -sfS --retry 5 -X PUT "$$IMDS/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sfS --retry 5 -H "X-aws-ec2-metadata-token: $$token" "$$IMDS/latest/$$1"
}
INSTANCE_ID=$$(imds meta-data/instance-id)
REGION=$$(imds meta-data/placement/region)
mkdir -p "$$R/etc/gangway" "$$R/etc/systemd/system" && chmod 700 "$$R/etc/gangway"
echo "AWS_DEFAULT_REGION=$$REGION" > "$$R/etc/gangway/aws.env"

# The agent and its dependencies (2. below) come from the deployment's wheelhouse only: the archive must have the
# sha256 it was published under; the install below takes nothing from an index and nothing whose hash
# is not listed here (the agent's own wheel included). The venv keeps Debian's pip as it is: upgrading
# it would fetch an unpinned package.
export DEBIAN_FRONTEND=noninteractive
# At first boot cloud-init or unattended-upgrades may hold dpkg's lock for a while: wait for it.
# Only what the image lacks (Debian's cloud image has ssh and curl; a prepared image has them all).
phase() { echo "gangway phase: $$1 $$(date +%s.%N)"; }
phase packages
NEED=()
for p in python3-venv nftables openssh-server conntrack curl; do
  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || NEED+=("$$p")
done
if [ "$${#NEED[@]}" -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q "$${NEED[@]}"
fi

# The game's own user, from the first boot: it owns the game's files (autostart and SFTP uploads need
# it) and is the only account the game runs as.
id -u ${game_user} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin ${game_user}

# The instance's metadata (and through it the instance role) is the agent's alone: no other user's
# packets reach 169.254.169.254, from before the agent or the game ever run (the launch's hop limit of 1
# keeps containers and forwarders out too).
cat > "$$R/etc/gangway/imds-guard.nft" <<'NFT'
table inet gangway_imds {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 169.254.169.254 meta skuid != 0 counter reject with icmp type admin-prohibited
  }
}
NFT
cat > "$$R/etc/systemd/system/gangway-imds-guard.service" <<'UNIT'
[Unit]
Description=gangway: the instance metadata service for root (the agent) only
DefaultDependencies=no
Before=network-pre.target gangway-agent.service
Wants=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/gangway/imds-guard.nft
[Install]
WantedBy=sysinit.target
UNIT
systemctl daemon-reload
systemctl enable --now gangway-imds-guard.service
# 1. The data volume. EBS on Nitro shows up as NVMe, named by its volume id without the dash; on Xen
# it is the /dev/sdf it was attached as, renamed xvdf. Without a volume id (the instance may be launched
# before its volume exists) it is the one EBS disk that is not in use (the root disk has / mounted).
data_disk() {
  if [ -n "$$VOLUME_ID" ]; then
    local id=$$DEV_DIR/disk/by-id/nvme-Amazon_Elastic_Block_Store_$${VOLUME_ID/-/}
    if [ -e "$$id" ]; then echo "$$id"; elif [ -e "$$DEV_DIR/xvdf" ]; then echo "$$DEV_DIR/xvdf"; fi
    return 0
  fi
  local link dev found=""
  for link in "$$DEV_DIR"/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol*; do
    case $$link in *-part*|*'*') continue ;; esac
    dev=$$(readlink -f "$$link")
    [ -n "$$(lsblk -nro MOUNTPOINT "$$dev" 2>/dev/null | tr -d '[:space:]')" ] && continue
    case " $$found " in *" $$dev "*) ;; *) found="$${found:+$$found }$$dev" ;; esac
  done
  [ -z "$$found" ] && [ -e "$$DEV_DIR/xvdf" ] && found=$$DEV_DIR/xvdf
  case $$found in
    *" "*) echo "gangway bootstrap FAILED: more than one data disk: $$found" >&2; return 1 ;;
  esac
  [ -z "$$found" ] || echo "$$found"
}
DEV=""
phase disk
for _ in $$(seq 1 ${disk_wait_s}); do DEV=$$(data_disk) || exit 1; [ -n "$$DEV" ] && break; sleep 1; done
if [ -z "$$DEV" ]; then
  echo "gangway bootstrap FAILED: data volume $${VOLUME_ID:-(any)} not attached after ${disk_wait_s}s" >&2
  exit 1
fi
echo "data volume: $$DEV"
if ! blkid -p "$$DEV" >/dev/null 2>&1; then
  mkfs.ext4 -q -L gangway-data "$$DEV"   # blank: a new game's first start
fi
# Mounted by its file system's UUID (a device name can change between boots), through fstab so a reboot
# mounts it again.
UUID=$$(blkid -p -s UUID -o value "$$DEV")
mkdir -p "$$R${mountpoint}"
grep -q "^UUID=$$UUID " "$$R/etc/fstab" 2>/dev/null || \
  echo "UUID=$$UUID ${mountpoint} auto defaults,nofail 0 2" >> "$$R/etc/fstab"
mount "$$DEV" "$$R${mountpoint}"
# sshd's chroot must be root's and not writable by others; the game's folder is the game user's.
chown root:root "$$R${mountpoint}" && chmod 755 "$$R${mountpoint}"
mkdir -p "$$R${mountpoint}/game"
chown -R ${game_user}: "$$R${mountpoint}/game"
# 2. The agent (see above). Its venv is kept on the data disk, so a start from the game's snapshot skips the
# download and pip (most of a first boot): under a folder only root may open, named by this Python and
# the wheelhouse's sha256, complete only once its marker is written. A new deployment's wheelhouse or
# another image's Python makes a new one (the old ones are removed). The venv's scripts name the data
# disk's path, the same on every boot; /opt/gangway/venv points at it.
phase agent-install
PYV=$$(python3 -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
KEEP=$$R${mountpoint}/.gangway-agent
VENV=$$KEEP/$$PYV-$$AGENT_SHA256
if [ -e "$$VENV/.complete" ]; then
  echo "agent: the venv kept on the data disk ($$PYV-$$AGENT_SHA256)"
else
  rm -rf "$$KEEP"
  mkdir -p "$$KEEP" && chmod 700 "$$KEEP"
  WHEELS=$$KEEP/wheelhouse
  mkdir -p "$$WHEELS"
  cat > "$$WHEELS/requirements.txt" <<'REQ'
${agent_requirements}
REQ
  curl -sfS --retry 5 -o "$$WHEELS/wheelhouse.tar" "$$AGENT_URL"
  echo "$$AGENT_SHA256  $$WHEELS/wheelhouse.tar" | sha256sum -c --quiet -
  tar -xf "$$WHEELS/wheelhouse.tar" -C "$$WHEELS" --no-same-owner --no-same-permissions
  python3 -m venv "$$VENV"
  "$$VENV/bin/pip" install --quiet --disable-pip-version-check --no-index --require-hashes \
    --only-binary :all: --find-links "$$WHEELS" -r "$$WHEELS/requirements.txt"
  rm -rf "$$WHEELS"
  touch "$$VENV/.complete"
fi
mkdir -p "$$R/opt/gangway"
ln -sfn "$$VENV" "$$R/opt/gangway/venv"

# From here on the boot's output (cloud-final) and the agent's journal go to the game's log group too,
# so a start that fails is readable without a shell on the instance.
if [ -n "$$LOG_GROUP" ]; then
  cat > "$$R/opt/gangway/journal.py" <<'PY'
import sys
from gangway_agent.logsink import BatchingSink, CloudWatchShipper
sink = BatchingSink(CloudWatchShipper(sys.argv[1], sys.argv[2]), batch_lines=500, flush_interval_s=5)
try:
    for line in sys.stdin:
        sink.write("journal", line.rstrip("\n"))
finally:
    sink.close()
PY
  cat > "$$R/etc/systemd/system/gangway-journal.service" <<UNIT
[Unit]
Description=gangway: the boot's and the agent's journal to CloudWatch Logs $$LOG_GROUP
After=network-online.target
[Service]
EnvironmentFile=/etc/gangway/aws.env
ExecStart=/bin/sh -c 'journalctl -b -f -o short-iso --cursor-file=/var/lib/gangway-journal.cursor -u cloud-final.service -u gangway-agent.service | /opt/gangway/venv/bin/python /opt/gangway/journal.py "$$LOG_GROUP" "journal-$$INSTANCE_ID"'
Restart=always
RestartSec=10
[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now gangway-journal.service
fi

phase key-fetch

# 3. The IoT identity: written by the StartGame Identity step under $$PARAMS/$$INSTANCE_ID/ (it may still
# be on its way when this runs, so wait for it); the files are root-only.
"$$R/opt/gangway/venv/bin/python" - "$$REGION" "$$PARAMS/$$INSTANCE_ID" "$$R/etc/gangway" <<'PY'
import os, sys, time, boto3
region, path, into = sys.argv[1:4]
ssm = boto3.client("ssm", region_name=region)
deadline = time.monotonic() + ${identity_wait_s}
while True:
    try:
        cert = ssm.get_parameter(Name=f"{path}/certificate", WithDecryption=True)["Parameter"]["Value"]
        key = ssm.get_parameter(Name=f"{path}/private-key", WithDecryption=True)["Parameter"]["Value"]
        break
    except Exception as exc:  # not written yet, or the instance role not associated yet
        if time.monotonic() > deadline:
            sys.exit(f"gangway bootstrap FAILED: no IoT identity at {path} in SSM: {exc}")
        time.sleep(5)
for name, text in (("device.pem.crt", cert), ("private.pem.key", key)):
    fd = os.open(f"{into}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
# Held here now: the copy in SSM goes, so nothing that later borrows the instance role can read it.
for name in ("certificate", "private-key"):
    try:
        ssm.delete_parameter(Name=f"{path}/{name}")
    except ssm.exceptions.ParameterNotFound:
        pass
PY
curl -sfS --retry 5 -o "$$R/etc/gangway/AmazonRootCA1.pem" "$$CA_URL"

# 4. The agent's configuration (agent/README.md, Configuration).
cat > "$$R/etc/gangway/agent.toml" <<'TOML'
${agent_toml}
TOML

# 5. The agent under systemd, restarted on failure.
cat > "$$R/etc/systemd/system/gangway-agent.service" <<'UNIT'
${systemd_unit}
UNIT
phase game-start
systemctl daemon-reload
systemctl enable --now gangway-agent.service
echo "gangway bootstrap: done"
