#!/bin/sh
# Installs (or upgrades) kanade-backend: the binary, a system user `kanade`, /etc/kanade/backend.toml, the backend's
# part of `kanade security init` in /etc/kanade/security, its state in /var/lib/kanade/backend, and the hardened unit
# deploy/kanade-backend.service. Run it again to upgrade: configs and secrets are kept unless --force-config.
USAGE='usage: deploy-backend.sh --binary PATH [--security-dir DIR] [--config FILE] [--static-token TOKEN]
                         [--force-config] [--no-start] [--root DIR]

  --binary PATH         the kanade-backend to install as /usr/local/bin/kanade-backend
  --security-dir DIR    the `kanade security init` folder: the backend'"'"'s files (backend.creds, system.creds,
                        operator-signing.nk, agent-signing.nk, account.jwt, backend-signing.key, ca.pem,
                        trust-root.pub) go to /etc/kanade/security (root:kanade; secrets 0640). Never trust-root.key.
  --config FILE         the backend config (default: deploy/backend.example.toml)
  --static-token TOKEN  the bootstrap static token (at least 16 characters), kept in /etc/kanade/backend.env
                        (root:kanade 0640) as KANADE_AUTH_STATIC_TOKEN; prefer accounts (README)
  --force-config        replace configs and secrets that are already installed
  --no-start            do not enable and start the service
  --root DIR            install into DIR as if it were / (for tests and images; nothing is started)'
. "$(dirname -- "$0")/common.sh"

BINARY="" SECURITY="" CONFIG="$DEPLOY/backend.example.toml" TOKEN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a path"; BINARY=$2; shift 2 ;;
        --security-dir) [ $# -ge 2 ] || usage_error "--security-dir needs a folder"; SECURITY=$2; shift 2 ;;
        --config) [ $# -ge 2 ] || usage_error "--config needs a file"; CONFIG=$2; shift 2 ;;
        --static-token) [ $# -ge 2 ] || usage_error "--static-token needs a token"; TOKEN=$2; shift 2 ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done
check_binary "$BINARY"
if [ -n "$TOKEN" ]; then
    [ "${#TOKEN}" -ge 16 ] || die "--static-token must be at least 16 characters"
    case "$TOKEN" in *[!A-Za-z0-9._~+/=-]*) die "--static-token may hold letters, digits and . _ ~ + / = - only" ;; esac
fi
require_root_privileges

ensure_user kanade /var/lib/kanade
install_file "$BINARY" /usr/local/bin/kanade-backend 0755 root root
say "binary /usr/local/bin/kanade-backend: installed"
install_dir /etc/kanade 0755 root root
install_dir /var/lib/kanade 0755 root root
install_dir /var/lib/kanade/backend 0750 kanade kanade
install_config "$CONFIG" /etc/kanade/backend.toml 0640 root kanade "$FORCE"
if [ -n "$SECURITY" ]; then
    install_dir /etc/kanade/security 0750 root kanade
    for f in backend.creds system.creds operator-signing.nk agent-signing.nk account.jwt backend-signing.key; do
        install_config "$SECURITY/$f" "/etc/kanade/security/$f" 0640 root kanade "$FORCE"
    done
    for f in ca.pem trust-root.pub; do
        install_config "$SECURITY/$f" "/etc/kanade/security/$f" 0644 root kanade "$FORCE"
    done
elif [ ! -e "$(at /etc/kanade/security/backend.creds)" ]; then
    die "no /etc/kanade/security/backend.creds yet: pass --security-dir (the kanade security init folder)"
fi
if [ -n "$TOKEN" ]; then
    env_file=$(mktemp)
    printf 'KANADE_AUTH_STATIC_TOKEN=%s\n' "$TOKEN" >"$env_file"
    install_config "$env_file" /etc/kanade/backend.env 0640 root kanade "$FORCE"
    rm -f -- "$env_file"
fi
install_unit kanade-backend.service
start_service kanade-backend.service "$NO_START"
