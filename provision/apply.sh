#!/bin/sh
# syncpi converger: applies a bundle (see provision/README.md) to the system it runs on.
#
#   sh apply.sh [--check] [--chroot|--live] BUNDLE_DIR
#
# Facts (packages, users, file hashes, unit states) are read here, in the same run, so one upload
# and one execution are enough over SSH. Output on stdout is the line protocol documented in
# README.md; nothing else is printed there. Needs only what every Debian system has: a POSIX sh,
# coreutils, diffutils, dpkg, apt, passwd tools and (for units) systemctl.
#
# Every value from the manifest is used inside double quotes, and globbing is off, so a hostile
# value can at worst name a wrong path — and the bundle builder refuses those before we get here.

set -u
set -f
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
DEBIAN_FRONTEND=noninteractive
APT_LISTCHANGES_FRONTEND=none
export PATH LC_ALL DEBIAN_FRONTEND APT_LISTCHANGES_FRONTEND

TAB=$(printf '\t')
MODE=apply
ENV=live
BUNDLE=

usage() {
  printf 'FAIL\targs\t-\t%s\n' "$1"
  printf 'usage: apply.sh [--check] [--chroot|--live] BUNDLE_DIR\n' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case $1 in
    --check) MODE=check ;;
    --chroot) ENV=chroot ;;
    --live) ENV=live ;;
    --) shift; break ;;
    -*) usage "unknown option $1" ;;
    *) [ -z "$BUNDLE" ] || usage "more than one bundle directory"; BUNDLE=$1 ;;
  esac
  shift
done
[ -n "$BUNDLE" ] || usage "no bundle directory given"
MANIFEST=$BUNDLE/manifest
[ -f "$MANIFEST" ] || usage "no manifest in $BUNDLE"
IFS= read -r header <"$MANIFEST" || header=
[ "$header" = "syncpi-bundle${TAB}1" ] || usage "unsupported bundle format (first line: $header)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/syncpi-apply.XXXXXX") || usage "cannot create a work directory"
CUR_TMP=
cleanup() {
  [ -z "$CUR_TMP" ] || rm -f "$CUR_TMP"
  rm -rf "$WORK"
}
trap cleanup EXIT
# A cut connection (SIGHUP) or Ctrl-C must still remove a temp file; the target file itself is
# only ever replaced by rename, so it is old or new, never partial.
trap 'cleanup; exit 129' HUP
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 141' PIPE

: >"$WORK/notified"
: >"$WORK/changed"
: >"$WORK/started"
: >"$WORK/reinstall"
CHANGES=0
HANDLERS=0
STEP=start
UNIT_FILES_CHANGED=0
DAEMON_RELOADED=0
UNITS_FAILED=0

printf 'PROTO\t1\tmode=%s\tenv=%s\n' "$MODE" "$ENV"

# ---- output -------------------------------------------------------------------------------

step() {
  STEP=$1
  printf 'STEP\t%s\n' "$1"
}

change() { # KIND TARGET ACTION
  printf 'CHANGE\t%s\t%s\t%s\n' "$1" "$2" "$3"
  CHANGES=$((CHANGES + 1))
}

warn() {
  printf 'WARN\t%s\n' "$*"
}

summary() { # RESULT
  printf 'SUMMARY\tmode=%s\tenv=%s\tchanges=%s\thandlers=%s\tunitsfailed=%s\tresult=%s\n' "$MODE" "$ENV" "$CHANGES" "$HANDLERS" "$UNITS_FAILED" "$1"
}

# Stop the whole apply: the failing command's output, then the step, its exit code and why.
fail() { # CODE MESSAGE...
  code=$1
  shift
  if [ -s "$WORK/out" ]; then
    tail -n 200 "$WORK/out" | while IFS= read -r l || [ -n "$l" ]; do printf 'OUT\t%s\n' "$l"; done
  fi
  printf 'FAIL\t%s\t%s\t%s\n' "$STEP" "$code" "$*"
  summary failed
  exit 1
}

# Run a command with its output captured; stop the apply when it fails.
run() {
  "$@" >"$WORK/out" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || fail "$rc" "command failed: $*"
  : >"$WORK/out"
}

# ---- manifest -----------------------------------------------------------------------------

# records KIND: print the records of that kind without the kind field (fields tab-separated).
records() {
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      "$1$TAB"*) printf '%s\n' "${line#"$1$TAB"}" ;;
    esac
  done <"$MANIFEST"
}

# in_list KIND VALUE: is VALUE one of the single-field records of KIND?
in_list() {
  [ -f "$WORK/list-$1" ] || records "$1" >"$WORK/list-$1"
  grep -F -x -q -e "$2" "$WORK/list-$1"
}

# ---- facts --------------------------------------------------------------------------------

# One line per known package: @NAME@STATUS|ESSENTIAL|PRIORITY. "@" appears in no package name
# nor in the other fields, so "@NAME@" matches exactly one package's line.
gather_packages() {
  dpkg-query -W -f='@${Package}@${db:Status-Abbrev}|${Essential}|${Priority}\n' >"$WORK/pkgs" 2>"$WORK/out" ||
    fail $? "cannot read the package database"
}

pkg_line() {
  grep -F -m1 -e "@$1@" "$WORK/pkgs" 2>/dev/null
}

# Installed and configured (what "install" converges to).
pkg_installed() {
  l=$(pkg_line "$1") || return 1
  st=${l#@*@}
  case $st in
    ?[iWt]*) return 0 ;;
  esac
  return 1
}

# Anything on disk beyond leftover config files (what "purge" converges away from).
pkg_present() {
  l=$(pkg_line "$1") || return 1
  st=${l#@*@}
  case $st in
    ?[nc]*) return 1 ;;
  esac
  return 0
}

# Why a package must never be removed, or nothing (status 1) when it may be.
pkg_protection() {
  if in_list install "$1"; then echo "installed by the plan"; return 0; fi
  if in_list keep "$1"; then echo "kept by the config"; return 0; fi
  l=$(pkg_line "$1") || return 1
  rest=${l#@*@}
  rest=${rest#*|}
  ess=${rest%%|*}
  prio=${rest#*|}
  [ "$ess" = yes ] && { echo "Essential"; return 0; }
  [ "$prio" = required ] && { echo "Priority: required"; return 0; }
  return 1
}

# Primary group of a user, or the user's own name when it does not exist yet (check mode).
primary_group() {
  g=$(id -gn "$1" 2>/dev/null) || g=$1
  printf '%s\n' "$g"
}

resolve_group() { # OWNER GROUP
  if [ "$2" = "-" ]; then primary_group "$1"; else printf '%s\n' "$2"; fi
}

meta_of() { # PATH -> "MODE OWNER GROUP"
  stat -c '%a %U %G' -- "$1" 2>/dev/null
}

sha_of() {
  s=$(sha256sum <"$1" 2>/dev/null) || return 1
  printf '%s\n' "${s%% *}"
}

systemctl_offline() {
  if [ "$ENV" = chroot ]; then systemctl --root=/ "$@"; else systemctl "$@"; fi
}

# ---- packages -----------------------------------------------------------------------------

step_packages_install() {
  step packages-install
  missing=
  for p in $(records install); do
    pkg_installed "$p" || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  if [ "$MODE" = check ]; then
    for p in $missing; do change package "$p" install; done
    return 0
  fi
  run apt-get update -q
  # shellcheck disable=SC2086 # names are validated package names, one word each
  run apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
  gather_packages
  for p in $missing; do
    pkg_installed "$p" || fail - "package $p is still not installed after apt-get install"
    change package "$p" installed
  done
}

# Purge records may be globs (the headless profile: "xserver-xorg*"). A glob expands to the
# present packages it matches, minus protected ones, which are skipped quietly: a profile must
# never fail an apply because some image happens to ship a required package matching it.
# An exact name stays exact, and a protected exact name is refused.
expand_purge() {
  for p in $(records purge); do
    case $p in
      *'*'* | *'?'*)
        while IFS= read -r l; do
          n=${l#@}
          n=${n%%@*}
          # shellcheck disable=SC2254 # the pattern is the point; it is validated to [a-z0-9+.*?-]
          case $n in
            $p) pkg_present "$n" && ! pkg_protection "$n" >/dev/null && printf '%s\n' "$n" ;;
          esac
        done <"$WORK/pkgs"
        ;;
      *) printf '%s\n' "$p" ;;
    esac
  done | sort -u
}

step_packages_purge() {
  step packages-purge
  present=
  for p in $(expand_purge); do
    if in_list install "$p" || in_list keep "$p"; then
      warn "not purging $p: $(pkg_protection "$p")"
      continue
    fi
    pkg_present "$p" || continue
    why=$(pkg_protection "$p") && fail - "refusing to purge $p: it is $why"
    present="$present $p"
  done
  [ -n "$present" ] || return 0
  # The simulation shows everything apt would take with it; none of it may be protected.
  # shellcheck disable=SC2086
  apt-get -s -q purge --autoremove $present >"$WORK/sim" 2>"$WORK/out" || {
    rc=$?
    cat "$WORK/sim" >>"$WORK/out"
    fail "$rc" "apt-get could not plan the purge of$present"
  }
  : >"$WORK/removed"
  while IFS=' ' read -r verb name _rest; do
    case $verb in
      Purg | Remv) printf '%s\n' "${name%%:*}" >>"$WORK/removed" ;;
    esac
  done <"$WORK/sim"
  while IFS= read -r r; do
    why=$(pkg_protection "$r") && fail - "refusing to purge$present: apt would also remove $r, which is $why"
  done <"$WORK/removed"
  if [ "$MODE" = check ]; then
    while IFS= read -r r; do change package "$r" purge; done <"$WORK/removed"
    return 0
  fi
  # shellcheck disable=SC2086
  run apt-get purge -y -q --autoremove $present
  gather_packages
  while IFS= read -r r; do change package "$r" purged; done <"$WORK/removed"
}

# ---- users --------------------------------------------------------------------------------

# Supplementary groups syncpi added, "USER<TAB>GROUP" per line: only these are ever removed.
GROUPS_OURS=/var/lib/syncpi/groups

step_users() {
  step users
  if [ -f "$GROUPS_OURS" ]; then cp "$GROUPS_OURS" "$WORK/groups-ours"; else : >"$WORK/groups-ours"; fi
  : >"$WORK/groups-ours-next"
  records group >"$WORK/groups"
  while IFS= read -r g; do
    getent group "$g" >/dev/null 2>&1 && continue
    [ "$MODE" = check ] || run groupadd --system "$g"
    change group "$g" created
  done <"$WORK/groups"
  records user >"$WORK/users"
  while IFS="$TAB" read -r name system home shell; do
    if ! ent=$(getent passwd "$name"); then
      if [ "$MODE" = apply ]; then
        if [ "$system" = 1 ]; then
          run useradd --system --user-group --home-dir "$home" --no-create-home --shell "$shell" "$name"
          if [ ! -d "$home" ]; then
            run mkdir -p "$home"
            run chown "$name:$(primary_group "$name")" "$home"
            run chmod 750 "$home"
          fi
        else
          run useradd --user-group --create-home --home-dir "$home" --shell "$shell" "$name"
        fi
      fi
      change user "$name" created
    else
      cur_home=$(printf '%s\n' "$ent" | cut -d: -f6)
      cur_shell=$(printf '%s\n' "$ent" | cut -d: -f7)
      if [ "$cur_home" != "$home" ]; then
        [ "$MODE" = check ] || run usermod --home "$home" "$name"
        change user "$name" home
      fi
      if [ "$cur_shell" != "$shell" ]; then
        [ "$MODE" = check ] || run usermod --shell "$shell" "$name"
        change user "$name" shell
      fi
    fi
    records usergroup >"$WORK/ugroups"
    while IFS="$TAB" read -r uname g; do
      [ "$uname" = "$name" ] || continue
      if in_group "$name" "$g"; then
        # Kept as ours only if we added it: a membership the system had before is never taken away.
        grep -qxF -e "$name$TAB$g" "$WORK/groups-ours" && printf '%s\t%s\n' "$name" "$g" >>"$WORK/groups-ours-next"
        continue
      fi
      [ "$MODE" = check ] || run usermod --append --groups "$g" "$name"
      printf '%s\t%s\n' "$name" "$g" >>"$WORK/groups-ours-next"
      change user "$name" "group $g"
    done <"$WORK/ugroups"
  done <"$WORK/users"
  # Memberships syncpi added that the plan no longer lists are removed.
  while IFS="$TAB" read -r name g; do
    grep -qxF -e "$name$TAB$g" "$WORK/groups-ours-next" && continue
    getent passwd "$name" >/dev/null 2>&1 && in_group "$name" "$g" || continue
    [ "$MODE" = check ] || run gpasswd --delete "$name" "$g"
    change user "$name" "group $g removed"
  done <"$WORK/groups-ours"
  if [ "$MODE" = apply ] && ! cmp -s "$WORK/groups-ours" "$WORK/groups-ours-next"; then
    run mkdir -p "${GROUPS_OURS%/*}"
    run cp "$WORK/groups-ours-next" "$GROUPS_OURS.new"
    run mv -f "$GROUPS_OURS.new" "$GROUPS_OURS"
  fi
}

in_group() { # USER GROUP
  for have in $(id -nG "$1" 2>/dev/null); do [ "$have" = "$2" ] && return 0; done
  return 1
}

# ---- dirs and files -----------------------------------------------------------------------

ensure_parent() { # PATH
  parent=${1%/*}
  [ -n "$parent" ] || return 0
  [ -d "$parent" ] && return 0
  [ "$MODE" = check ] || run mkdir -p "$parent"
  change dir "$parent" created
}

step_dirs() {
  step dirs
  records dir >"$WORK/dirs"
  while IFS="$TAB" read -r path mode owner group; do
    group=$(resolve_group "$owner" "$group")
    if [ -e "$path" ] && [ ! -d "$path" ]; then
      fail - "$path exists and is not a directory"
    fi
    if [ ! -d "$path" ]; then
      if [ "$MODE" = apply ]; then
        run mkdir -p "$path"
        run chown "$owner:$group" "$path"
        run chmod "$mode" "$path"
      fi
      change dir "$path" created
      continue
    fi
    cur=$(meta_of "$path")
    [ "$cur" = "$mode $owner $group" ] && continue
    if [ "$MODE" = apply ]; then
      run chown "$owner:$group" "$path"
      run chmod "$mode" "$path"
    fi
    if [ "${cur%% *}" != "$mode" ]; then change dir "$path" mode; else change dir "$path" owner; fi
  done <"$WORK/dirs"
}

# Write SRC to PATH so that PATH is at every instant either the old or the new file:
# a temp file in the same directory, owner and mode set before any content is visible under
# the final name, data flushed, then one rename, then the directory entry flushed.
write_atomic() { # SRC PATH MODE OWNER GROUP
  dir=${2%/*}
  [ -n "$dir" ] || dir=/
  CUR_TMP=$dir/.syncpi-tmp.$$
  rm -f "$CUR_TMP"
  (umask 077 && cp -- "$1" "$CUR_TMP") >"$WORK/out" 2>&1 || fail $? "cannot write a temp file in $dir"
  run chown "$4:$5" "$CUR_TMP"
  run chmod "$3" "$CUR_TMP"
  run sync -- "$CUR_TMP"
  run mv -f -T -- "$CUR_TMP" "$2"
  CUR_TMP=
  run sync -- "$dir"
}

show_diff() { # OLD NEW PATH SECRET
  if [ "$4" = 1 ]; then
    printf 'DIFF\t%s\t%s\n' "$3" "(secret content: diff hidden)"
    return 0
  fi
  diff -u --label "$3" --label "$3" -- "$1" "$2" >"$WORK/diff" 2>&1
  while IFS= read -r l || [ -n "$l" ]; do printf 'DIFF\t%s\t%s\n' "$3" "$l"; done <"$WORK/diff"
}

file_changed() { # PATH
  printf '%s\n' "$1" >>"$WORK/changed"
  case $1 in
    /etc/systemd/system/* | /lib/systemd/system/* | /usr/lib/systemd/system/* | /etc/systemd/user/*)
      UNIT_FILES_CHANGED=1 ;;
  esac
  records notify >"$WORK/notify"
  while IFS="$TAB" read -r npath handler; do
    [ "$npath" = "$1" ] && printf '%s\n' "$handler" >>"$WORK/notified"
  done <"$WORK/notify"
}

# A run killed between writing its temp file and the rename (SIGKILL, power loss) leaves a
# .syncpi-tmp.PID beside a managed file; the managed file itself is intact. Applies to one
# target are serialised, so any temp file but our own is such a leftover.
sweep_stale_temps() {
  while IFS="$TAB" read -r path _rest; do
    d=${path%/*}
    [ -n "$d" ] || d=/
    printf '%s\n' "$d"
  done <"$WORK/files" | sort -u >"$WORK/filedirs"
  # Globbing is off in this script (set -f); the only glob is here, on a validated directory.
  set +f
  while IFS= read -r d; do
    for t in "$d"/.syncpi-tmp.*; do
      [ -f "$t" ] || continue
      [ "$t" = "$d/.syncpi-tmp.$$" ] && continue
      if [ "$MODE" = check ]; then change tempfile "$t" remove; else rm -f -- "$t" && change tempfile "$t" removed; fi
    done
  done <"$WORK/filedirs"
  set -f
}

step_files() {
  step files
  records file >"$WORK/files"
  sweep_stale_temps
  while IFS="$TAB" read -r path mode owner group secret src sha; do
    group=$(resolve_group "$owner" "$group")
    src=$BUNDLE/$src
    [ -f "$src" ] || fail - "bundle is missing $src (for $path)"
    if [ -d "$path" ] && [ ! -L "$path" ]; then fail - "$path is a directory, expected a file"; fi
    action=
    if [ ! -e "$path" ] && [ ! -L "$path" ]; then
      action=created
      old=/dev/null
    elif [ -L "$path" ] || [ "$(sha_of "$path")" != "$sha" ]; then
      action=updated
      old=$path
      [ -L "$path" ] && [ ! -e "$path" ] && old=/dev/null
    elif [ "$(meta_of "$path")" != "$mode $owner $group" ]; then
      cur=$(meta_of "$path")
      if [ "${cur%% *}" != "$mode" ]; then action=mode; else action=owner; fi
    fi
    [ -n "$action" ] || continue
    [ "$action" = updated ] && install_changed "$old" "$src" "$path"
    if [ "$MODE" = check ]; then
      case $action in
        created | updated) show_diff "$old" "$src" "$path" "$secret" ;;
      esac
    else
      case $action in
        created | updated)
          ensure_parent "$path"
          write_atomic "$src" "$path" "$mode" "$owner" "$group"
          ;;
        *)
          run chown "$owner:$group" "$path"
          run chmod "$mode" "$path"
          ;;
      esac
    fi
    change file "$path" "$action"
    file_changed "$path"
  done <"$WORK/files"
}

# The [Install] section of a unit file, without comments or blank lines.
install_section() {
  awk '/^[[:space:]]*\[/ { inst = ($0 ~ /^[[:space:]]*\[Install\][[:space:]]*$/); next }
       inst && !/^[[:space:]]*([#;]|$)/ { print }' "$1"
}

# A unit already enabled keeps the links of its old [Install] section: note it for re-enabling.
install_changed() { # OLD NEW PATH
  case $3 in
    /etc/systemd/system/*.service | /etc/systemd/system/*.timer | /etc/systemd/system/*.socket | /etc/systemd/system/*.path | /etc/systemd/system/*.mount) ;;
    *) return 0 ;;
  esac
  [ "$(install_section "$1")" = "$(install_section "$2")" ] || printf '%s\n' "${3##*/}" >>"$WORK/reinstall"
}

# ---- units --------------------------------------------------------------------------------

unit_state() {
  s=$(systemctl_offline is-enabled "$1" 2>/dev/null) || true
  printf '%s\n' "${s:-not-found}"
}

step_units() {
  step units
  if [ "$ENV" = live ] && [ "$UNIT_FILES_CHANGED" = 1 ] && [ "$MODE" = apply ]; then
    # New or changed unit files must be loaded before they can be enabled and started.
    run systemctl daemon-reload
    handler_line daemon-reload daemon-reload - ran
    HANDLERS=$((HANDLERS + 1))
    UNIT_FILES_CHANGED=0
    DAEMON_RELOADED=1
  fi
  for u in $(records mask); do
    [ "$(unit_state "$u")" = masked ] && continue
    if [ "$MODE" = apply ]; then
      if [ "$ENV" = live ]; then run systemctl mask --now "$u"; else run systemctl_offline mask "$u"; fi
    fi
    change unit "$u" masked
  done
  for u in $(records disable); do
    case $(unit_state "$u") in
      enabled | enabled-runtime | linked | linked-runtime) ;;
      *) continue ;;
    esac
    if [ "$MODE" = apply ]; then
      if [ "$ENV" = live ]; then run systemctl disable --now "$u"; else run systemctl_offline disable "$u"; fi
    fi
    change unit "$u" disabled
  done
  for u in $(records enable); do
    st=$(unit_state "$u")
    if [ "$st" = enabled ] && grep -qxF -e "$u" "$WORK/reinstall"; then
      [ "$MODE" = check ] || run systemctl_offline reenable "$u"
      change unit "$u" reenabled
      continue
    fi
    case $st in
      enabled | enabled-runtime | static | alias | indirect | generated) continue ;;
    esac
    if [ "$MODE" = apply ]; then
      [ "$st" = masked ] && run systemctl_offline unmask "$u"
      run systemctl_offline enable "$u"
    fi
    change unit "$u" enabled
    # On a live host a newly enabled unit also starts (after the handlers, once).
    printf '%s\n' "$u" >>"$WORK/started"
  done
}

# ---- handlers -----------------------------------------------------------------------------

handler_notified() {
  while IFS= read -r n; do [ "$n" = "$1" ] && return 0; done <"$WORK/notified"
  return 1
}

handler_line() { # NAME ACTION UNIT STATUS
  printf 'HANDLER\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4"
}

apply_sysctls() {
  records sysctl >"$WORK/sysctls"
  while IFS="$TAB" read -r key value; do
    f=/proc/sys/$(printf '%s' "$key" | tr . /)
    printf '%s\n' "$value" >"$f" 2>"$WORK/out" && continue
    rc=$?
    # A container does not own the kernel's settings: the file applies wherever it boots for real.
    if systemd-detect-virt --container --quiet 2>/dev/null; then
      warn "sysctl $key cannot be set inside this container; set it on its host"
      : >"$WORK/out"
      continue
    fi
    fail "$rc" "cannot set sysctl $key"
  done <"$WORK/sysctls"
}

# Handlers notified on a live host but not yet run successfully, kept across runs: an apply cut
# off (or with a unit that failed to start) after its files were written must not lose them, or
# the rerun would find every file converged and never restart what they feed.
PENDING=/var/lib/syncpi/pending-handlers

save_pending() { # [failed]: these already ran once and did not bring their unit up
  mkdir -p "${PENDING%/*}" && {
    while IFS= read -r n; do printf 'handler\t%s\t%s\n' "$n" "${1:--}"; done <"$WORK/notified"
    while IFS= read -r u; do printf 'start\t%s\t%s\n' "$u" "${1:--}"; done <"$WORK/started"
  } >"$PENDING.tmp" && sync -- "$PENDING.tmp" && mv -f -T -- "$PENDING.tmp" "$PENDING" ||
    fail - "cannot record pending handlers in $PENDING"
}

load_pending() {
  [ -f "$PENDING" ] || return 0
  while IFS="$TAB" read -r kind name how; do
    # A check reports a unit that did not come up as such, not as drift: the config is applied.
    if [ "$MODE" = check ] && [ "$how" = failed ]; then
      warn "$name: did not bring its unit up at the last apply; the next apply retries it"
      continue
    fi
    case $kind in
      handler) printf '%s\n' "$name" >>"$WORK/notified" ;;
      start) printf '%s\n' "$name" >>"$WORK/started" ;;
    esac
  done <"$PENDING"
  sort -u -o "$WORK/notified" "$WORK/notified"
  sort -u -o "$WORK/started" "$WORK/started"
  [ ! -s "$WORK/notified" ] && [ ! -s "$WORK/started" ] ||
    warn "restarts left pending by an earlier apply (cut off, or a unit that did not start) run now"
}

# Start or restart a unit on a live host. A unit that does not come up (its drive is absent, its
# config is broken) does not stop the apply: every other handler still runs, and the unit is
# reported (HANDLER … failed, a WARN with its last log lines) and retried by the next apply.
unit_job() { # NAME ACTION UNIT VERB
  since=$(date +%s)
  if systemctl "$4" "$3" >"$WORK/out" 2>&1; then
    : >"$WORK/out"
    handler_line "$1" "$2" "$3" ran
    HANDLERS=$((HANDLERS + 1))
    return 0
  fi
  res=$(systemctl show -p Result --value "$3" 2>/dev/null) || res=
  handler_line "$1" "$2" "$3" failed
  UNITS_FAILED=$((UNITS_FAILED + 1))
  printf '%s\n' "$1" >>"$WORK/failed-handlers"
  warn "$3 did not $2 (result: ${res:-unknown}); retried by the next apply"
  # The unit's own log says why; systemctl's message only when the journal has nothing.
  journalctl --no-pager -q -o cat -n 8 --since "@$since" -u "$3" >"$WORK/why" 2>/dev/null || :
  [ -s "$WORK/why" ] || cp "$WORK/out" "$WORK/why"
  while IFS= read -r l || [ -n "$l" ]; do [ -z "$l" ] || warn "  | $l"; done <"$WORK/why"
  : >"$WORK/out"
}

run_handler() { # NAME ACTION UNIT
  case $2 in
    restart) unit_job "$1" "$2" "$3" restart ;;
    reload) unit_job "$1" "$2" "$3" reload-or-restart ;;
    daemon-reload) run systemctl daemon-reload ;;
    sysctl) apply_sysctls ;;
    command)
      want=$1
      records handlerarg >"$WORK/hargs"
      set --
      while IFS="$TAB" read -r hname arg; do
        [ "$hname" = "$want" ] && set -- "$@" "$arg"
      done <"$WORK/hargs"
      [ $# -gt 0 ] || fail - "handler has no command"
      run "$@"
      ;;
    *) fail - "unknown handler action $2" ;;
  esac
}

step_handlers() {
  step handlers
  : >"$WORK/restarted"
  : >"$WORK/failed-handlers"
  UNITS_FAILED=0
  if [ "$ENV" = live ]; then
    load_pending
    if [ "$MODE" = apply ] && { [ -s "$WORK/notified" ] || [ -s "$WORK/started" ]; }; then save_pending; fi
  fi
  # Changed unit files need a daemon-reload (on a live apply the units step already did it).
  if [ "$UNIT_FILES_CHANGED" = 1 ]; then
    if [ "$ENV" = chroot ]; then handler_line daemon-reload daemon-reload - skipped-chroot
    else handler_line daemon-reload daemon-reload - would-run; fi
    DAEMON_RELOADED=1
  fi
  records handler >"$WORK/handlers"
  while IFS="$TAB" read -r name action unit liveonly; do
    handler_notified "$name" || continue
    if [ "$ENV" = chroot ]; then
      case $action in
        restart | reload | daemon-reload | sysctl) liveonly=1 ;;
      esac
      if [ "$liveonly" = 1 ]; then handler_line "$name" "$action" "$unit" skipped-chroot; continue; fi
    fi
    if [ "$action" = daemon-reload ] && [ "$DAEMON_RELOADED" = 1 ]; then continue; fi
    [ "$unit" = - ] || printf '%s\n' "$unit" >>"$WORK/restarted"
    if [ "$MODE" = check ]; then
      handler_line "$name" "$action" "$unit" would-run
      continue
    fi
    STEP="handler $name"
    run_handler "$name" "$action" "$unit"
    case $action in
      restart | reload) ;;
      *)
        handler_line "$name" "$action" "$unit" ran
        HANDLERS=$((HANDLERS + 1))
        ;;
    esac
  done <"$WORK/handlers"
  STEP=handlers
  [ "$ENV" = live ] || return 0
  while IFS= read -r u; do
    skip=0
    while IFS= read -r r; do [ "$r" = "$u" ] && skip=1; done <"$WORK/restarted"
    [ "$skip" = 1 ] && continue
    case $u in
      *.service | *.timer | *.socket | *.path | *.mount | *.automount | *.swap | *.target) ;;
      *) continue ;;
    esac
    if [ "$MODE" = check ]; then handler_line "start:$u" start "$u" would-run; continue; fi
    STEP="handler start:$u"
    unit_job "start:$u" start "$u" start
  done <"$WORK/started"
  STEP=handlers
  [ "$MODE" = apply ] || return 0
  if [ "$UNITS_FAILED" = 0 ]; then
    rm -f "$PENDING"
  else
    # Only what failed stays pending.
    while IFS= read -r n; do
      case $n in start:*) printf '%s\n' "${n#start:}" ;; esac
    done <"$WORK/failed-handlers" >"$WORK/started"
    grep -v '^start:' "$WORK/failed-handlers" >"$WORK/notified" || :
    save_pending failed
  fi
}

# ---- main ---------------------------------------------------------------------------------

step facts
gather_packages
step_packages_install
step_packages_purge
step_users
step_dirs
step_files
step_units
step_handlers
summary ok
exit 0
