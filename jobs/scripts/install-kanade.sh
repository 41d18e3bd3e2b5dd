#!/bin/sh
# Installs a published build of a kanade component on a Linux host, run by that host's agent (jobs/install-kanade-
# {backend,nats,client}-sh.yaml): downloads the package from the backend's /api/app-packages/<name>/<version> with
# a bearer token, checks its SHA-256 and that it runs and names the version asked for — all before touching
# anything — then stops the service, swaps the binary (a .new beside it moved over, the old one kept as .old), starts
# the service and waits until it runs; if it does not come up, the old binary goes back and the job fails.
#
# Fill in the knobs below in a copy, publish that copy and fire the job (README, "Updating the backend, broker and
# client"). The token needs only to read packages: `kanade token create --role viewer --ttl 1d`.
Component=''            # kanade-backend, nats-server or kanade-client
AgentSourceUrl=''       # https://backend.example.internal:8080/api/app-packages/kanade-backend/0.44.0
AgentSourceVersion=''   # 0.44.0: the version the package must say it is
AgentSourceSha256=''    # the package's SHA-256, 64 lowercase hex digits (`kanade app list` shows it)
AgentSourceAuthToken='' # a bearer token that may read packages (viewer)
AgentSourceCaFile=''    # the CA to trust for an https URL, if not the system's (the fleet's ca.pem)
InstallPath=''          # default: /usr/local/bin/<component>, where deploy/linux installs it
ServiceName=''          # default: the component's unit (kanade-backend, nats-server); none for kanade-client
HealthUrl=''             # kanade-backend: its /health (http://127.0.0.1:8080/health), checked to name the new version
StartTimeout=120        # seconds to wait for the service to run again (nats-server recovers its store first)
SettleSeconds=10        # ... and to keep running before the previous binary is dropped

set -eu
say() { printf 'install-kanade: %s\n' "$*"; }
die() { printf 'install-kanade: error: %s\n' "$*" >&2; exit 1; }

case "$Component" in
    kanade-backend) default_service=kanade-backend.service ;;
    nats-server) default_service=nats-server.service ;;
    kanade-client) default_service='' ;;
    *) die "Component must be kanade-backend, nats-server or kanade-client, not '$Component'" ;;
esac
case "$AgentSourceUrl" in
    http://*|https://*) ;;
    *) die "AgentSourceUrl must be an http(s) URL of /api/app-packages/<name>/<version>" ;;
esac
case "$AgentSourceVersion" in
    ''|*[!A-Za-z0-9.+_-]*) die "AgentSourceVersion must be a version (letters, digits, . + _ -)" ;;
esac
[ "${#AgentSourceSha256}" -eq 64 ] || die "AgentSourceSha256 must be 64 lowercase hex digits"
case "$AgentSourceSha256" in *[!0-9a-f]*) die "AgentSourceSha256 must be 64 lowercase hex digits" ;; esac
[ -n "$AgentSourceAuthToken" ] || die "AgentSourceAuthToken is empty"
case "$AgentSourceAuthToken" in *[!A-Za-z0-9._~+/=-]*) die "AgentSourceAuthToken holds characters a token does not" ;; esac
[ -z "$AgentSourceCaFile" ] || [ -r "$AgentSourceCaFile" ] || die "AgentSourceCaFile $AgentSourceCaFile cannot be read"
case "$HealthUrl" in ''|http://*|https://*) ;; *) die "HealthUrl must be an http(s) URL" ;; esac
case "$StartTimeout" in ''|*[!0-9]*) die "StartTimeout must be a number of seconds" ;; esac
case "$SettleSeconds" in ''|*[!0-9]*) die "SettleSeconds must be a number of seconds" ;; esac
target=${InstallPath:-/usr/local/bin/$Component}
service=${ServiceName:-$default_service}
[ -e "$target" ] || die "$target does not exist: install the component first (deploy/linux)"
command -v curl >/dev/null 2>&1 || die "curl is not installed"

# Beside the target, so that the swap is a rename on one file system.
new="$target.new"
old="$target.old"
rm -f -- "$new"
trap 'rm -f -- "$new"' EXIT

say "downloading $AgentSourceUrl"
# The token goes through a header file on stdin, never onto a command line that `ps` shows.
printf 'Authorization: Bearer %s\n' "$AgentSourceAuthToken" |
    curl --fail --silent --show-error --location --retry 3 --max-time 600 \
        ${AgentSourceCaFile:+--cacert "$AgentSourceCaFile"} -H @- -o "$new" -- "$AgentSourceUrl" ||
    die "the download failed"
actual=$(sha256sum -- "$new" | cut -d' ' -f1)
[ "$actual" = "$AgentSourceSha256" ] ||
    die "the package's SHA-256 is $actual, not $AgentSourceSha256: nothing was changed"
chmod 0755 "$new"
said=$("$new" --version 2>&1 | head -n 1) || die "the package does not run: $said"
case " $said " in
    *" $AgentSourceVersion "*|*" v$AgentSourceVersion "*) ;;
    *) die "the package says '$said', not version $AgentSourceVersion: nothing was changed" ;;
esac
say "package checked: $said, sha256 $actual"

# Running: the unit is active and still is $SettleSeconds later and, with HealthUrl, the backend answers as the new
# version.
running() {
    if [ -n "$service" ]; then
        systemctl is-active --quiet "$service" || return 1
        sleep "$SettleSeconds"
        systemctl is-active --quiet "$service" || return 1
    fi
    [ -z "$HealthUrl" ] && return 0
    curl --fail --silent --max-time 5 ${AgentSourceCaFile:+--cacert "$AgentSourceCaFile"} -- "$HealthUrl" 2>/dev/null |
        grep -q "\"version\":\"$AgentSourceVersion\""
}

# Whatever fails between the stop and the start, the service is started again on the binary in place.
swap_failed() {
    [ -e "$target" ] || [ ! -e "$old" ] || mv -f -- "$old" "$target"
    [ -z "$service" ] || systemctl start "$service" || true
    die "the swap failed ($1): the previous binary is in place"
}
if [ -n "$service" ]; then
    say "stopping $service"
    systemctl stop "$service" || swap_failed "systemctl stop $service"
fi
if [ "$Component" = kanade-client ]; then
    # The client runs in each signed-in user's session; it starts again at the next logon.
    pkill -f -- "^$target( |\$)" 2>/dev/null || true
fi
cp -p -- "$target" "$old" || swap_failed "cannot keep a copy as $old"
mv -f -- "$new" "$target" || swap_failed "cannot move the package to $target"
say "$target swapped (the previous binary is $old)"
if [ -n "$service" ]; then
    systemctl start "$service" || true
    deadline=$(($(date +%s) + StartTimeout))
    until running; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "$service did not start within ${StartTimeout}s: putting the previous binary back"
            systemctl stop "$service" 2>/dev/null || true
            mv -f -- "$old" "$target"
            systemctl start "$service" || true
            die "$service did not start with version $AgentSourceVersion; the previous version was restored"
        fi
        sleep 1
    done
    say "$service is running"
fi
rm -f -- "$old"
say "$Component $AgentSourceVersion installed"
