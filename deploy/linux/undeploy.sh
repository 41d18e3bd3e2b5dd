#!/bin/sh
# Removes one component that deploy-<component>.sh installed, and only its own files: the service and its binary;
# with --purge also its configs, its state and its user (with --keep-secrets its credentials and keys stay). Safe
# to run again: what is gone already is "not present, skipping".
USAGE='usage: undeploy.sh agent|backend|nats|client [--purge] [--keep-secrets] [--root DIR]

  --purge          also remove the configs, the state (the agent'"'"'s data dir with its outbox, the backend'"'"'s
                   database, the JetStream store) and the service user
  --keep-secrets   with --purge, keep the credentials and keys (to reinstall the same identity)
  --root DIR       act on DIR as if it were / (for tests and images)'
. "$(dirname -- "$0")/common.sh"

COMPONENT="" PURGE=0 KEEP_SECRETS=0
while [ $# -gt 0 ]; do
    case "$1" in
        agent|backend|nats|client) [ -z "$COMPONENT" ] || usage_error "one component at a time"; COMPONENT=$1; shift ;;
        --purge) PURGE=1; shift ;;
        --keep-secrets) KEEP_SECRETS=1; shift ;;
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory"; set_root "$2"; shift 2 ;;
        -h|--help) say "$USAGE"; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done
[ -n "$COMPONENT" ] || usage_error "name the component: agent, backend, nats or client"
[ "$KEEP_SECRETS" = 0 ] || [ "$PURGE" = 1 ] || usage_error "--keep-secrets goes with --purge"
require_root_privileges

# secret PATH: removed unless --keep-secrets.
secret() {
    if [ "$KEEP_SECRETS" = 1 ]; then
        [ ! -e "$(at "$1")" ] || say "secret $1: kept (--keep-secrets)"
    else
        remove "$1" secret
    fi
}

# Removes folder $1 if nothing is left in it.
remove_if_empty() {
    if [ -d "$(at "$1")" ] && [ -z "$(ls -A -- "$(at "$1")")" ]; then
        rmdir -- "$(at "$1")"
        say "folder $1: removed (empty)"
    fi
}

if [ "$COMPONENT" = client ]; then
    # No service, config or state: the autostart entry and the binary; running copies end at their users' logout.
    remove /etc/xdg/autostart/kanade-client.desktop autostart
    remove /usr/local/bin/kanade-client binary
    exit 0
fi
case "$COMPONENT" in
    agent) unit=kanade-agent.service binary=/usr/local/bin/kanade-agent ;;
    backend) unit=kanade-backend.service binary=/usr/local/bin/kanade-backend ;;
    nats) unit=nats-server.service binary=/usr/local/bin/nats-server ;;
esac
stop_service "$unit"
remove "/etc/systemd/system/$unit" unit
! systemd_here || systemctl daemon-reload
remove "$binary" binary
[ "$PURGE" = 1 ] || exit 0

case "$COMPONENT" in
    agent)
        remove /etc/kanade/agent.toml config
        remove /etc/kanade/ca.pem config
        secret /etc/kanade/agent.env
        secret /etc/kanade/bootstrap.creds
        # The data dir holds the agent's own credential and key: with --keep-secrets the agent keeps its identity.
        if [ "$KEEP_SECRETS" = 1 ]; then
            say "state /var/lib/kanade/agent: kept (--keep-secrets: it holds the agent's credential)"
        else
            remove /var/lib/kanade/agent state
        fi
        ;;
    backend)
        remove /etc/kanade/backend.toml config
        secret /etc/kanade/backend.env
        for f in backend.creds system.creds operator-signing.nk agent-signing.nk account.jwt backend-signing.key; do
            secret "/etc/kanade/security/$f"
        done
        remove /etc/kanade/security/ca.pem config
        remove /etc/kanade/security/trust-root.pub config
        remove_if_empty /etc/kanade/security
        remove /var/lib/kanade/backend state
        remove_user kanade
        ;;
    nats)
        remove /etc/nats/nats-server.conf config
        remove /etc/nats/operator.jwt config
        remove /etc/nats/nats-server.pem config
        secret /etc/nats/nats-security.conf
        secret /etc/nats/nats-server-key.pem
        remove_if_empty /etc/nats
        remove /var/lib/nats state
        remove_user nats
        ;;
esac
remove_if_empty /etc/kanade
remove_if_empty /var/lib/kanade
