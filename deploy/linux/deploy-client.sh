#!/bin/sh
# Installs (or upgrades) kanade-client, the end user's tray app (issue #21): the binary, and an XDG autostart entry
# that starts it in every user's graphical session at login. It has no service, user, config or secret of its own:
# it talks to the local agent. Running copies keep running until their users log in again.
USAGE='usage: deploy-client.sh --binary PATH [--root DIR]

  --binary PATH   the kanade-client to install as /usr/local/bin/kanade-client
  --root DIR      install into DIR as if it were / (for tests and images)'
. "$(dirname -- "$0")/common.sh"

BINARY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || usage_error "--binary needs a path"; BINARY=$2; shift 2 ;;
        --force-config|--no-start) usage_error "$1 does not apply to the client (no config, no service)" ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done
check_binary "$BINARY"
require_root_privileges

install_file "$BINARY" /usr/local/bin/kanade-client 0755 root root
say "binary /usr/local/bin/kanade-client: installed"
desktop=$(mktemp)
cat >"$desktop" <<'ENTRY'
[Desktop Entry]
Type=Application
Name=kanade
Comment=Your PC's kanade agent: notifications, self-service installs and maintenance
Exec=/usr/local/bin/kanade-client
Terminal=false
NoDisplay=true
X-GNOME-Autostart-enabled=true
ENTRY
install_file "$desktop" /etc/xdg/autostart/kanade-client.desktop 0644 root root
rm -f -- "$desktop"
say "autostart /etc/xdg/autostart/kanade-client.desktop: written"
