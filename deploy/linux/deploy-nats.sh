#!/bin/sh
# Installs (or upgrades) nats-server as kanade's broker: the binary, a system user `nats`, deploy/nats-server.conf
# and the broker's part of `kanade security init` in /etc/nats, the JetStream store /var/lib/nats, and the hardened
# unit deploy/nats-server.service. Run it again to upgrade: configs are kept unless --force-config.
USAGE='usage: deploy-nats.sh --binary PATH [--security-dir DIR] [--config FILE] [--force-config] [--no-start] [--root DIR]

  --binary PATH        the nats-server (>= 2.11) to install as /usr/local/bin/nats-server
  --security-dir DIR   the `kanade security init` folder, made with --broker-dir /etc/nats and
                       --resolver-dir /var/lib/nats/jwt: its nats-security.conf, operator.jwt, nats-server.pem and
                       nats-server-key.pem go to /etc/nats (root:nats, 0640)
  --config FILE        the server config (default: deploy/nats-server.conf)
  --force-config       replace configs that are already installed
  --no-start           do not enable and start the service
  --root DIR           install into DIR as if it were / (for tests and images; nothing is started)'
. "$(dirname -- "$0")/common.sh"

BINARY="" SECURITY="" CONFIG="$DEPLOY/nats-server.conf"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a path"; BINARY=$2; shift 2 ;;
        --security-dir) [ $# -ge 2 ] || usage_error "--security-dir needs a folder"; SECURITY=$2; shift 2 ;;
        --config) [ $# -ge 2 ] || usage_error "--config needs a file"; CONFIG=$2; shift 2 ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done
check_binary "$BINARY"
require_root_privileges

ensure_user nats /var/lib/nats
install_file "$BINARY" /usr/local/bin/nats-server 0755 root root
say "binary /usr/local/bin/nats-server: installed"
install_dir /etc/nats 0750 root nats
install_dir /var/lib/nats 0750 nats nats
install_config "$CONFIG" /etc/nats/nats-server.conf 0640 root nats "$FORCE"
if [ -n "$SECURITY" ]; then
    for f in nats-security.conf operator.jwt nats-server.pem nats-server-key.pem; do
        install_config "$SECURITY/$f" "/etc/nats/$f" 0640 root nats "$FORCE"
    done
    include=$(at /etc/nats/nats-security.conf)
    grep -q '"/etc/nats/nats-server.pem"' "$include" \
        || die "nats-security.conf does not read its certificate from /etc/nats: make the folder with kanade security init --broker-dir /etc/nats --resolver-dir /var/lib/nats/jwt"
    # The service may write under /var/lib/nats only (ProtectSystem=strict): the resolver keeps account updates there.
    grep -q 'dir: "/var/lib/nats/' "$include" \
        || die "nats-security.conf keeps account JWTs outside /var/lib/nats, where the service cannot write: make the folder with --resolver-dir /var/lib/nats/jwt"
elif [ ! -e "$(at /etc/nats/nats-security.conf)" ]; then
    die "no /etc/nats/nats-security.conf yet: pass --security-dir (the kanade security init folder)"
fi
install_unit nats-server.service
start_service nats-server.service "$NO_START"
