#!/bin/bash
# gangway instance bootstrap (rendered by chalicelib/lifecycle/bootstrap.py; placeholder fields are filled
# in there, $$$$ is a literal dollar). Runs once, as root, at first boot (cloud-init user data).
# 1. install the agent in its own venv  2. mount the game's data volume (format only if blank)
# 3. fetch this instance's IoT certificate and key from SSM Parameter Store (SecureString, readable only
#    by this instance's role)  4. write /etc/gangway/agent.toml  5. run the agent under systemd.
set -euo pipefail
exec > >(tee -a /var/log/gangway-bootstrap.log) 2>&1

TENANT=${tenant_q}
GAME=${game_q}
VOLUME_ID=${volume_id_q}
PARAMS=${parameter_prefix_q}
AGENT_PACKAGE=${agent_package_q}
# Tests only: a throw-away root for every path this script writes (none on an instance).
R=$${GANGWAY_BOOT_ROOT:-}
DEV_DIR=$$R/dev

imds() {
  local token
  token=$$(curl -sfS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sfS -H "X-aws-ec2-metadata-token: $$token" "http://169.254.169.254/latest/$$1"
}
INSTANCE_ID=$$(imds meta-data/instance-id)
REGION=$$(imds meta-data/placement/region)

# 1. The agent, from AGENT_PACKAGE (a pip requirement: a wheel URL or a package spec), in its own venv.
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3-venv nftables openssh-server conntrack curl
python3 -m venv /opt/gangway/venv
/opt/gangway/venv/bin/pip install --quiet --upgrade pip
/opt/gangway/venv/bin/pip install --quiet "$$AGENT_PACKAGE" boto3

# 2. The data volume. EBS on Nitro shows up as NVMe, named by its volume id without the dash; on Xen
# it is the /dev/sdf it was attached as, renamed xvdf. Without a volume id (the instance may be launched
# before its volume exists) it is the one EBS disk that is not in use (the root disk has / mounted).
data_disk() {
  if [ -n "$$VOLUME_ID" ]; then
    [ -e "$$DEV_DIR/disk/by-id/nvme-Amazon_Elastic_Block_Store_$${VOLUME_ID/-/}" ] \
      && echo "$$DEV_DIR/disk/by-id/nvme-Amazon_Elastic_Block_Store_$${VOLUME_ID/-/}"
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
for _ in $$(seq 1 ${disk_wait_s}); do DEV=$$(data_disk) || exit 1; [ -n "$$DEV" ] && break; sleep 1; done
if [ -z "$$DEV" ]; then
  echo "gangway bootstrap FAILED: data volume $${VOLUME_ID:-(any)} not attached after ${disk_wait_s}s" >&2
  exit 1
fi
echo "data volume: $$DEV"
if ! blkid "$$DEV" >/dev/null 2>&1; then
  mkfs.ext4 -q -L gangway-data "$$DEV"   # blank: a new game's first start
fi
mkdir -p "$$R${mountpoint}"
mount "$$DEV" "$$R${mountpoint}"
echo "UUID=$$(blkid -s UUID -o value "$$DEV") ${mountpoint} auto defaults,nofail 0 2" >> "$$R/etc/fstab"
mkdir -p "$$R${mountpoint}/game"

# 3. The IoT identity: written by the StartGame Identity step under $$PARAMS/$$INSTANCE_ID/ (it may still
# be on its way when this runs, so wait for it); the files are root-only.
mkdir -p /etc/gangway && chmod 700 /etc/gangway
/opt/gangway/venv/bin/python - "$$REGION" "$$PARAMS/$$INSTANCE_ID" <<'PY'
import os, sys, time, boto3
region, path = sys.argv[1], sys.argv[2]
ssm = boto3.client("ssm", region_name=region)
for _ in range(180):
    try:
        cert = ssm.get_parameter(Name=f"{path}/certificate", WithDecryption=True)["Parameter"]["Value"]
        key = ssm.get_parameter(Name=f"{path}/private-key", WithDecryption=True)["Parameter"]["Value"]
        break
    except Exception:  # not written yet, or the instance role not associated yet
        time.sleep(5)
else:
    sys.exit("no IoT identity in SSM after 15 minutes")
for name, text in (("device.pem.crt", cert), ("private.pem.key", key)):
    fd = os.open(f"/etc/gangway/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
PY
curl -sfS -o /etc/gangway/AmazonRootCA1.pem https://www.amazontrust.com/repository/AmazonRootCA1.pem

# 4. The agent's configuration (agent/README.md, Configuration).
cat > /etc/gangway/agent.toml <<'TOML'
${agent_toml}
TOML

# 5. The agent under systemd, restarted on failure.
cat > /etc/systemd/system/gangway-agent.service <<'UNIT'
${systemd_unit}
UNIT
systemctl daemon-reload
systemctl enable --now gangway-agent
