#!/bin/sh
# Installs (or upgrades) kanade-agent as a root service: the binary, /etc/kanade/agent.toml, what the agent needs to
# enrol and to trust commands (the fleet's CA, the bootstrap credential, the enrolment token, the trust root) in
# /etc/kanade, and deploy/kanade-agent.service. Run it again to upgrade: configs are kept unless --force-config.
USAGE='usage: deploy-agent.sh --binary PATH [--nats-url URL] [--ca FILE] [--bootstrap-creds FILE] [--enroll-token TOKEN]
                       [--trust-root KEY] [--groups G,H] [--config FILE] [--force-config] [--no-start] [--root DIR]

  --binary PATH            the kanade-agent to install as /usr/local/bin/kanade-agent
  --nats-url URL           the broker (nats://host:4222, or a comma list of a cluster'"'"'s servers)
  --ca FILE                the fleet'"'"'s CA (ca.pem of `kanade security init`), installed as /etc/kanade/ca.pem
  --bootstrap-creds FILE   the credential that may only ask to enrol (bootstrap.creds), as /etc/kanade/bootstrap.creds
  --enroll-token TOKEN     a token from `kanade enroll create`, used once on the first start
  --trust-root KEY         the fleet'"'"'s trust root: the ed25519:... key in trust-root.pub
  --groups G,H             groups to ask for at enrolment (a token with groups decides instead)
  --config FILE            the agent config (default: deploy/agent.example.toml)
  --force-config           replace configs that are already installed
  --no-start               do not enable and start the service
  --root DIR               install into DIR as if it were / (for tests and images; nothing is started)'
. "$(dirname -- "$0")/common.sh"

BINARY="" URL="" CA="" BOOTSTRAP="" TOKEN="" TRUST="" GROUPS_="" CONFIG="$DEPLOY/agent.example.toml"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a path"; BINARY=$2; shift 2 ;;
        --nats-url) [ $# -ge 2 ] || usage_error "--nats-url needs a URL"; URL=$2; shift 2 ;;
        --ca) [ $# -ge 2 ] || usage_error "--ca needs a file"; CA=$2; shift 2 ;;
        --bootstrap-creds) [ $# -ge 2 ] || usage_error "--bootstrap-creds needs a file"; BOOTSTRAP=$2; shift 2 ;;
        --enroll-token) [ $# -ge 2 ] || usage_error "--enroll-token needs a token"; TOKEN=$2; shift 2 ;;
        --trust-root) [ $# -ge 2 ] || usage_error "--trust-root needs a key"; TRUST=$2; shift 2 ;;
        --groups) [ $# -ge 2 ] || usage_error "--groups needs a list"; GROUPS_=$2; shift 2 ;;
        --config) [ $# -ge 2 ] || usage_error "--config needs a file"; CONFIG=$2; shift 2 ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done
check_binary "$BINARY"
# Values end up in an environment file: one line each, nothing a shell or systemd would read as more.
for value in "$URL" "$TOKEN" "$TRUST" "$GROUPS_"; do
    case "$value" in *[!A-Za-z0-9._~+/=:,@-]*) die "option value $(printf '%.40s' "$value") holds a character an environment file cannot carry" ;; esac
done
case "$TRUST" in ''|ed25519:*) ;; *) die "--trust-root must be the ed25519:... key of trust-root.pub" ;; esac
require_root_privileges

install_file "$BINARY" /usr/local/bin/kanade-agent 0755 root root
say "binary /usr/local/bin/kanade-agent: installed"
install_dir /etc/kanade 0755 root root
install_config "$CONFIG" /etc/kanade/agent.toml 0600 root root "$FORCE"
[ -z "$CA" ] || install_config "$CA" /etc/kanade/ca.pem 0644 root root "$FORCE"
[ -z "$BOOTSTRAP" ] || install_config "$BOOTSTRAP" /etc/kanade/bootstrap.creds 0600 root root "$FORCE"
env_file=$(mktemp)
{
    [ -z "$URL" ] || printf 'KANADE_NATS_URL=%s\n' "$URL"
    [ -z "$TOKEN" ] || printf 'KANADE_ENROLL_TOKEN=%s\n' "$TOKEN"
    [ -z "$TRUST" ] || printf 'KANADE_TRUST_ROOT=%s\n' "$TRUST"
    [ -z "$GROUPS_" ] || printf 'KANADE_AGENT_GROUPS=%s\n' "$GROUPS_"
    [ -z "$BOOTSTRAP" ] || printf 'KANADE_BOOTSTRAP_CREDS=%s\n' /etc/kanade/bootstrap.creds
} >"$env_file"
if [ -s "$env_file" ]; then
    install_config "$env_file" /etc/kanade/agent.env 0600 root root "$FORCE"
fi
rm -f -- "$env_file"
install_unit kanade-agent.service
start_service kanade-agent.service "$NO_START"
