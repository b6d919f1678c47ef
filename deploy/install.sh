#!/usr/bin/env bash
# Install the splitfleet device agent as a systemd service on Raspberry Pi OS (arm64) or
# Ubuntu on a Jetson (L4T, arm64); any Debian-like arm64 or x86_64 system works the same.
#
#   npm run pack:agent        # where the project is built: ./splitfleet-agent-<version>.tgz
#   sudo deploy/install.sh --package ./splitfleet-agent-0.1.0.tgz \
#        --device gate-01 --fleet demo --url mqtt://edge.local:1883 --password-stdin <<<"$PW"
#   deploy/install.sh --dry-run ...     # print the plan, change nothing (no root needed)
#
# Steps: check the board and Node.js (20.19+; installed from NodeSource with
# --install-node, else the script says how), install ffmpeg (camera and video sources),
# install the agent package with npm (splitfleet-agent: the agent without the edge's
# dependencies; the full splitfleet package works too), create the system user
# `splitfleet` (groups: video), write /etc/splitfleet/agent.yaml (from --config FILE or
# from the flags), /etc/splitfleet/ca.pem (--ca) and /etc/splitfleet/agent.env (the MQTT
# password, mode 0600), install and enable splitfleet-agent.service.
set -euo pipefail

NODE_MIN_MAJOR=20
NODE_MIN_MINOR=19
SERVICE=splitfleet-agent
USER_NAME=splitfleet
CONF_DIR=/etc/splitfleet
UNIT_DIR=/etc/systemd/system
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

DRY_RUN=0
INSTALL_NODE=0
PACKAGE=""
CONFIG=""
DEVICE=""
FLEET="default"
URL=""
USERNAME=""
PASSWORD_STDIN=0
SOURCE="v4l2:/dev/video0"
MODEL=""
CODEC=""
CA=""
NO_START=0

usage() {
  cat <<'USAGE'
usage: install.sh [--dry-run] [--install-node] [--package SPEC] [--no-start]
                  (--config FILE | --device ID --url URL [--fleet F] [--username U]
                   [--source SPEC] [--model M] [--codec C]) [--ca FILE] [--password-stdin]
  --package SPEC     what `npm install -g` installs: the agent package from
                     `npm run pack:agent` (splitfleet-agent-<version>.tgz), a folder or
                     a registry name (default: the newest splitfleet-agent-*.tgz in the
                     checkout this script is in, else the checkout itself)
  --config FILE      an agent config (see device-agent/agent.example.yaml), copied as is
  --device ID        device id (also the MQTT user name unless --username)
  --url URL          the edge broker, e.g. mqtt://edge.local:1883 or mqtts://edge:8883
  --ca FILE          PEM certificate(s) to trust for an mqtts:// edge, installed as
                     /etc/splitfleet/ca.pem (a --config file names it: `ca: <that path>`)
  --password-stdin   read the device's MQTT password from stdin (one line)
  --install-node     install Node.js 20 from NodeSource when it is missing or too old
  --dry-run          print every step, change nothing
USAGE
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --install-node) INSTALL_NODE=1 ;;
    --no-start) NO_START=1 ;;
    --package) PACKAGE=${2:?--package needs a value}; shift ;;
    --config) CONFIG=${2:?--config needs a file}; shift ;;
    --device) DEVICE=${2:?--device needs an id}; shift ;;
    --fleet) FLEET=${2:?--fleet needs an id}; shift ;;
    --url) URL=${2:?--url needs a URL}; shift ;;
    --username) USERNAME=${2:?--username needs a value}; shift ;;
    --source) SOURCE=${2:?--source needs a value}; shift ;;
    --model) MODEL=${2:?--model needs a value}; shift ;;
    --codec) CODEC=${2:?--codec needs a value}; shift ;;
    --ca) CA=${2:?--ca needs a file}; shift ;;
    --password-stdin) PASSWORD_STDIN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if [ -z "$CONFIG" ]; then
  [ -n "$DEVICE" ] || die "--device ID (or --config FILE) is required"
  [ -n "$URL" ] || die "--url URL (or --config FILE) is required"
  case "$DEVICE" in
    *[!A-Za-z0-9_.-]* | "") die "device id must be 1-64 of [A-Za-z0-9_.-]" ;;
  esac
else
  [ -r "$CONFIG" ] || die "cannot read $CONFIG"
fi
[ -z "$CA" ] || [ -r "$CA" ] || die "cannot read $CA"
if [ -z "$PACKAGE" ]; then
  ROOT=$(cd "$HERE/.." && pwd)
  PACKAGE=$ROOT
  for tgz in "$ROOT"/splitfleet-agent-*.tgz; do
    if [ -f "$tgz" ] && { [ "$PACKAGE" = "$ROOT" ] || [ "$tgz" -nt "$PACKAGE" ]; }; then
      PACKAGE=$tgz
    fi
  done
fi
[ -n "$USERNAME" ] || USERNAME=$DEVICE

PASSWORD=""
if [ "$PASSWORD_STDIN" = 1 ]; then
  IFS= read -r PASSWORD || true
  [ -n "$PASSWORD" ] || die "--password-stdin: no password on stdin"
fi

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo), or with --dry-run to see the plan"
fi

step() { printf '==> %s\n' "$*"; }

# run a command, or print it in a dry run
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '    would run: %s\n' "$*"
  else
    "$@"
  fi
}

# write stdin to a file with a mode and an owner (the content is shown in a dry run,
# secrets masked)
write_file() {
  local path=$1 mode=$2 owner=$3 content
  content=$(cat)
  if [ "$DRY_RUN" = 1 ]; then
    printf '    would write %s (mode %s, owner %s):\n' "$path" "$mode" "$owner"
    printf '%s\n' "$content" | sed -e 's/^\(SPLITFLEET_PASSWORD=\).*/\1********/' -e 's/^/      | /'
  else
    install -d -m 0755 "$(dirname "$path")"
    printf '%s\n' "$content" >"$path.tmp"
    chmod "$mode" "$path.tmp"
    chown "$owner" "$path.tmp"
    mv "$path.tmp" "$path"
  fi
}

# --- the board -------------------------------------------------------------------------
step "checking the system"
OS_ID=unknown
OS_NAME=unknown
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  OS_ID=${ID:-unknown}
  OS_NAME=${PRETTY_NAME:-unknown}
fi
ARCH=$(uname -m)
BOARD="generic"
if [ -r /proc/device-tree/model ]; then
  BOARD=$(tr -d '\0' </proc/device-tree/model)
fi
if [ -r /etc/nv_tegra_release ]; then
  BOARD="$BOARD (Jetson, $(head -n 1 /etc/nv_tegra_release | cut -c1-40))"
fi
printf '    os: %s (%s), arch: %s, board: %s\n' "$OS_NAME" "$OS_ID" "$ARCH" "$BOARD"
case "$ARCH" in
  aarch64 | arm64 | x86_64) ;;
  armv7l | armv6l) die "32-bit ARM is not supported (onnxruntime-node has no 32-bit ARM build): install the 64-bit Raspberry Pi OS" ;;
  *) echo "    warning: untested architecture $ARCH" ;;
esac
case "$OS_ID" in
  debian | raspbian | ubuntu) ;;
  *) echo "    warning: untested distribution $OS_ID (apt-get and systemd are assumed)" ;;
esac

# --- Node.js ---------------------------------------------------------------------------
step "checking Node.js (${NODE_MIN_MAJOR}.${NODE_MIN_MINOR} or newer)"
node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  local v major minor
  v=$(node -p 'process.versions.node' 2>/dev/null) || return 1
  major=${v%%.*}
  minor=${v#*.}
  minor=${minor%%.*}
  [ "$major" -gt "$NODE_MIN_MAJOR" ] ||
    { [ "$major" -eq "$NODE_MIN_MAJOR" ] && [ "$minor" -ge "$NODE_MIN_MINOR" ]; }
}
if node_ok; then
  printf '    node %s found\n' "$(node -p 'process.versions.node')"
elif [ "$INSTALL_NODE" = 1 ]; then
  printf '    installing Node.js 20 from NodeSource\n'
  run apt-get update
  run apt-get install -y ca-certificates curl gnupg
  run sh -c 'curl -fsSL https://deb.nodesource.com/setup_20.x | bash -'
  run apt-get install -y nodejs
else
  cat >&2 <<'HOW'
install.sh: Node.js 20.19 or newer is needed. Install it, then run this again:
    curl -fsSL https://deb.nodesource.com/setup_20.x | sudo bash -
    sudo apt-get install -y nodejs
  (or run install.sh with --install-node to let it do exactly that)
HOW
  [ "$DRY_RUN" = 1 ] || exit 1
  echo "    (dry run: going on as if it were installed)"
fi

# --- packages --------------------------------------------------------------------------
step "installing ffmpeg (camera and video sources)"
if command -v ffmpeg >/dev/null 2>&1; then
  echo "    ffmpeg found"
else
  run apt-get install -y --no-install-recommends ffmpeg
fi

step "installing the splitfleet agent from $PACKAGE"
run npm install -g --omit=dev --no-fund --no-audit "$PACKAGE"
BIN=""
if [ "$DRY_RUN" = 1 ]; then
  BIN="$(npm prefix -g 2>/dev/null || echo /usr/local)/bin/splitfleet-agent"
else
  BIN=$(command -v splitfleet-agent) || die "splitfleet-agent is not on PATH after npm install -g"
fi
printf '    splitfleet-agent: %s\n' "$BIN"

# --- user ------------------------------------------------------------------------------
step "creating the system user $USER_NAME (groups: video)"
if id "$USER_NAME" >/dev/null 2>&1; then
  echo "    user $USER_NAME exists"
  run usermod -a -G video "$USER_NAME"
else
  run useradd --system --home-dir /var/lib/splitfleet --no-create-home \
    --shell /usr/sbin/nologin --user-group --groups video "$USER_NAME"
fi

# --- config ----------------------------------------------------------------------------
if [ -n "$CA" ]; then
  step "writing $CONF_DIR/ca.pem (the CA the edge's certificate is checked against)"
  write_file "$CONF_DIR/ca.pem" 0644 root:root <"$CA"
fi
step "writing $CONF_DIR/agent.yaml"
if [ -n "$CONFIG" ]; then
  write_file "$CONF_DIR/agent.yaml" 0640 "root:$USER_NAME" <"$CONFIG"
else
  {
    echo "# written by deploy/install.sh; keys are the flags of 'splitfleet agent'"
    echo "device: $DEVICE"
    echo "fleet: $FLEET"
    echo "url: $URL"
    echo "username: $USERNAME"
    [ -z "$MODEL" ] || echo "model: $MODEL"
    [ -z "$CODEC" ] || echo "codec: $CODEC"
    [ -z "$CA" ] || echo "ca: $CONF_DIR/ca.pem"
    echo "source: '$SOURCE'"
    echo "loop: true"
    echo "fps: 5"
    echo "outbox: /var/lib/splitfleet/outbox"
    echo "bundle-dir: /var/lib/splitfleet/bundles"
  } | write_file "$CONF_DIR/agent.yaml" 0640 "root:$USER_NAME"
fi
if [ -n "$PASSWORD" ]; then
  step "writing $CONF_DIR/agent.env (the MQTT password, root only)"
  printf 'SPLITFLEET_PASSWORD=%s' "$PASSWORD" | write_file "$CONF_DIR/agent.env" 0600 root:root
fi

# --- the service -----------------------------------------------------------------------
step "installing $UNIT_DIR/$SERVICE.service"
sed "s#/usr/local/bin/splitfleet-agent#$BIN#" "$HERE/$SERVICE.service" |
  write_file "$UNIT_DIR/$SERVICE.service" 0644 root:root
run systemctl daemon-reload
if [ "$NO_START" = 1 ]; then
  run systemctl enable "$SERVICE"
else
  run systemctl enable --now "$SERVICE"
fi

step "done"
echo "    status: systemctl status $SERVICE; logs: journalctl -u $SERVICE -f"
