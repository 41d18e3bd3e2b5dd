# Shared by deploy/linux/*.sh (sourced, POSIX sh). Every path the scripts touch goes through `at`, so `--root DIR`
# installs into DIR as if it were / (how CI tests them: no systemd, no real users touched).

set -eu

ROOT=""
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
DEPLOY=$(dirname -- "$HERE")

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'error: %s\n\n%s\n' "$1" "$USAGE" >&2; exit 2; }

# The path $1 inside the root being installed into.
at() { printf '%s%s' "$ROOT" "$1"; }

# Takes `--root DIR` (which must exist) for the scripts' own option loops.
set_root() {
    [ -n "$1" ] || usage_error "--root needs a directory"
    [ -d "$1" ] || die "--root $1 is not a directory"
    ROOT=$(CDPATH= cd -- "$1" && pwd)
    [ "$ROOT" != "/" ] || ROOT=""
}

# The options every deploy script takes, for its option loop's last case: sets SHIFT to how many arguments the
# option took (`shift "$SHIFT"`), or refuses an unknown one.
FORCE=0
NO_START=0
common_option() {
    case "$1" in
        --force-config) FORCE=1; SHIFT=1 ;;
        --no-start) NO_START=1; SHIFT=1 ;;
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory"; set_root "$2"; SHIFT=2 ;;
        -h|--help) say "$USAGE"; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
}

# Refuses a missing or non-executable --binary.
check_binary() {
    [ -n "$1" ] || usage_error "--binary is required"
    [ -f "$1" ] && [ -x "$1" ] || die "--binary $1 is not an executable file"
}

require_root_privileges() {
    [ "$(id -u)" = 0 ] || die "run as root (it installs a service, a user and files under /etc and /usr/local)"
}

# Whether systemd manages this machine and the install is into it (not into --root).
systemd_here() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# Numeric ids of user/group $1 in the root being installed into (its /etc/passwd, /etc/group).
uid_of() { awk -F: -v n="$1" '$1 == n { print $3; exit }' "$(at /etc/passwd)"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3; exit }' "$(at /etc/group)"; }

# A system user $1 with home $2 and no login, with a group of its own; kept if it exists.
ensure_user() {
    if [ -n "$(uid_of "$1")" ]; then
        say "user $1: present"
        return
    fi
    command -v useradd >/dev/null 2>&1 || die "useradd is missing: create a system user $1 yourself"
    if [ -n "$ROOT" ]; then
        useradd --prefix "$ROOT" --system --user-group --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
    else
        useradd --system --user-group --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
    fi
    say "user $1: created"
}

remove_user() {
    if [ -z "$(uid_of "$1")" ]; then
        say "user $1: not present, skipping"
        return
    fi
    if [ -n "$ROOT" ]; then userdel --prefix "$ROOT" "$1"; else userdel "$1"; fi
    if [ -n "$(gid_of "$1")" ]; then
        if [ -n "$ROOT" ]; then groupdel --prefix "$ROOT" "$1"; else groupdel "$1"; fi
    fi
    say "user $1: removed"
}

# install_file SRC DEST MODE OWNER GROUP: copies SRC to DEST (in the root) with that mode and owner (names looked
# up in the root's own user database).
install_file() {
    [ -f "$1" ] || die "$1: no such file"
    mkdir -p "$(dirname -- "$(at "$2")")"
    install -m "$3" -- "$1" "$(at "$2")"
    chown "$(uid_of "$4"):$(gid_of "$5")" "$(at "$2")"
}

# install_dir DIR MODE OWNER GROUP
install_dir() {
    mkdir -p "$(at "$1")"
    chmod "$2" "$(at "$1")"
    chown "$(uid_of "$3"):$(gid_of "$4")" "$(at "$1")"
}

# A config file: installed when missing or with --force-config; otherwise the one there is kept (an operator's edits
# survive a reinstall).
install_config() { # SRC DEST MODE OWNER GROUP FORCE
    if [ -e "$(at "$2")" ] && [ "$6" != 1 ]; then
        say "config $2: kept (--force-config replaces it)"
        return
    fi
    install_file "$1" "$2" "$3" "$4" "$5"
    say "config $2: written"
}

# The unit file $1 (a name in deploy/) as /etc/systemd/system/$1; checked by systemd-analyze when installing
# into this machine.
install_unit() {
    install_file "$DEPLOY/$1" "/etc/systemd/system/$1" 0644 root root
    say "unit /etc/systemd/system/$1: written"
    if [ -z "$ROOT" ] && command -v systemd-analyze >/dev/null 2>&1; then
        systemd-analyze verify "/etc/systemd/system/$1" || die "systemd-analyze verify refuses $1"
    fi
}

# Starts (or restarts, after an upgrade) service $1 unless --no-start; under --root or without systemd, says so.
start_service() { # UNIT NO_START
    if [ "$2" = 1 ]; then
        say "service $1: not started (--no-start)"
    elif systemd_here; then
        systemctl daemon-reload
        systemctl enable "$1" >/dev/null
        systemctl restart "$1"
        say "service $1: enabled and (re)started"
    else
        say "service $1: not started (no systemd here, or --root): systemctl enable --now $1"
    fi
}

stop_service() {
    if systemd_here && systemctl list-unit-files "$1" >/dev/null 2>&1; then
        systemctl disable --now "$1" >/dev/null 2>&1 || true
        say "service $1: stopped and disabled"
    fi
}

# remove PATH WHAT: removes a file or folder in the root, or says it is not there.
remove() {
    if [ -e "$(at "$1")" ] || [ -L "$(at "$1")" ]; then
        rm -rf -- "$(at "$1")"
        say "$2 $1: removed"
    else
        say "$2 $1: not present, skipping"
    fi
}
