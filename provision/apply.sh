#!/bin/sh
# syncpi converger: applies a bundle (see provision/README.md) to the system it runs on.
#
#   sh apply.sh [--check] [--chroot|--live] BUNDLE_DIR
#
# Facts (packages, users, file hashes, unit states) are read here, in the same run, so one upload
# and one execution are enough over SSH; facts.sh (beside this script) reads them the way
# verify.sh does too. Output on stdout is the line protocol documented in
# README.md; nothing else is printed there. Needs only what every Debian system has: a POSIX sh,
# coreutils, diffutils, dpkg, apt, passwd tools, util-linux (setpriv) and (for units) systemctl.
#
# Every value from the manifest is used inside double quotes, and globbing is off, so a hostile
# value can at worst name a wrong path — and the bundle builder refuses those before we get here.

set -u
set -f
umask 022
# In an image of another architecture the chroot offers the building machine's shell and file
# tools (src/targets/native-tools.ts) in SYNCPI_NATIVE, so they run natively, not emulated. The
# target's programs that start others (apt-get with its maintainer scripts, systemctl's SysV
# helper, a handler's command) run through `target` (facts.sh), with the target's PATH alone.
TARGET_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PATH=${SYNCPI_NATIVE:+$SYNCPI_NATIVE:}$TARGET_PATH
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
[ -f "$BUNDLE/facts.sh" ] || usage "no facts.sh in $BUNDLE"
# shellcheck source=provision/facts.sh
. "$BUNDLE/facts.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/syncpi-apply.XXXXXX") || usage "cannot create a work directory"
CUR_TMP=
CUR_TMP_AS=root
cleanup() {
  [ -z "$CUR_TMP" ] || as_user "$CUR_TMP_AS" rm -f -- "$CUR_TMP"
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
: >"$WORK/started"
: >"$WORK/reinstall"
: >"$WORK/removing"
CHANGES=0
HANDLERS=0
STEP=start
UNIT_FILES_CHANGED=0
DAEMON_RELOADED=0
UNITS_FAILED=0
STATE_READY=0
WRITER=root

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
  [ "$1" != target ] || shift
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

# ---- what the system remembers ------------------------------------------------------------

# Root-owned and 0700: a record another account could write would let it choose what the next
# apply removes or restarts. Each record is replaced whole (temp file, fsync, rename, fsync dir).
STATE=$SYNCPI_STATE

# A state directory someone else could have made or swapped is not trusted, not even for reading.
state_trusted() {
  [ -e "$STATE" ] || [ -L "$STATE" ] || return 1
  if [ -L "$STATE" ] || [ ! -d "$STATE" ]; then fail - "$STATE is not a directory (a symbolic link?); refusing to trust or keep records there"; fi
  [ "$(stat -c %u -- "$STATE")" = "$SYNCPI_STATE_UID" ] || fail - "$STATE is not owned by root; refusing to trust its records"
  return 0
}

ensure_state_dir() {
  [ "$STATE_READY" = 1 ] && return 0
  state_trusted || mkdir -m 700 -- "$STATE" 2>"$WORK/out" || fail $? "cannot create $STATE"
  chmod 700 -- "$STATE" 2>"$WORK/out" || fail $? "cannot make $STATE private"
  STATE_READY=1
}

# state_read NAME: the record's lines, or nothing when there is none yet.
state_read() {
  state_trusted || return 0
  [ -f "$STATE/$1" ] && [ ! -L "$STATE/$1" ] || return 0
  cat -- "$STATE/$1"
}

state_write() { # NAME SRC
  ensure_state_dir
  sw_t=$(mktemp -- "$STATE/.$1.XXXXXX" 2>"$WORK/out") || fail $? "cannot record $STATE/$1"
  if cat -- "$2" >"$sw_t" && sync -- "$sw_t" && mv -f -T -- "$sw_t" "$STATE/$1" && sync -- "$STATE"; then return 0; fi
  rm -f -- "$sw_t"
  fail - "cannot record $STATE/$1"
}

state_remove() { # NAME
  state_trusted || return 0
  rm -f -- "$STATE/$1" && sync -- "$STATE" || fail - "cannot remove $STATE/$1"
}

# What syncpi put on this system, "KIND<TAB>KEY<TAB>ORIGIN<TAB>OWNER" per line:
#   file PATH new|found OWNER   new: syncpi created it (removed when it leaves the plan);
#                               found: it was there before (left in place when it leaves)
#   dir PATH new OWNER          a directory syncpi created (removed once empty)
#   enabled|masked UNIT - -     a unit syncpi enabled or masked (disabled or unmasked again)
#   user|group NAME - -         an account syncpi created (deleted again; homes stay)
#   package NAME - -            a package syncpi installed (purged again)
# followed by the notify, handler and handlerarg records of the last plan applied, so a file
# that leaves the plan still notifies what it fed (nm-reload for a removed Wi-Fi network).
# Each entry is written before the change it records: a cut apply never leaves an object
# syncpi made but forgot.
MANAGED_NAME=managed

managed_load() {
  state_read "$MANAGED_NAME" >"$WORK/managed"
}

managed_has() { # KIND KEY
  K=$1 P=$2 awk -F "$TAB" '$1 == ENVIRON["K"] && $2 == ENVIRON["P"] { f = 1 } END { exit !f }' "$WORK/managed"
}

# managed_list KIND: "KEY<TAB>ORIGIN<TAB>OWNER" of each entry of that kind.
managed_list() {
  K=$1 awk -F "$TAB" -v OFS="$TAB" '$1 == ENVIRON["K"] { print $2, $3, $4 }' "$WORK/managed"
}

managed_add() { # KIND KEY ORIGIN OWNER
  [ "$MODE" = apply ] || return 0
  managed_has "$1" "$2" && return 0
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$WORK/managed"
  state_write "$MANAGED_NAME" "$WORK/managed"
}

managed_del() { # KIND KEY
  [ "$MODE" = apply ] || return 0
  managed_has "$1" "$2" || return 0
  K=$1 P=$2 awk -F "$TAB" '!($1 == ENVIRON["K"] && $2 == ENVIRON["P"])' "$WORK/managed" >"$WORK/managed.next"
  mv -f -- "$WORK/managed.next" "$WORK/managed"
  state_write "$MANAGED_NAME" "$WORK/managed"
}

# After a complete apply: the handler records kept are those of the plan just applied.
managed_keep_handlers() {
  [ "$MODE" = apply ] || return 0
  awk -F "$TAB" '$1 != "notify" && $1 != "handler" && $1 != "handlerarg"' "$WORK/managed" >"$WORK/managed.next"
  grep -E "^(notify|handler|handlerarg)$TAB" "$MANIFEST" >>"$WORK/managed.next"
  cmp -s "$WORK/managed" "$WORK/managed.next" && return 0
  mv -f -- "$WORK/managed.next" "$WORK/managed"
  state_write "$MANAGED_NAME" "$WORK/managed"
}

# Handlers notified but not yet run successfully, kept across runs: "handler NAME HOW",
# "start UNIT HOW", "daemon-reload - -", HOW "failed" when it already ran once and did not bring
# its unit up. A notification is recorded before the rename (or enable, or removal) that makes it
# necessary, so an apply cut off anywhere after it still restarts what it changed.
PENDING_NAME=pending-handlers
PENDING_RELOAD=0

save_pending() { # [failed]
  {
    while IFS= read -r sp_n; do printf 'handler\t%s\t%s\n' "$sp_n" "${1:--}"; done <"$WORK/notified"
    while IFS= read -r sp_n; do printf 'start\t%s\t%s\n' "$sp_n" "${1:--}"; done <"$WORK/started"
    [ "$PENDING_RELOAD" = 0 ] || printf 'daemon-reload\t-\t-\n'
  } >"$WORK/pending"
  state_write "$PENDING_NAME" "$WORK/pending"
}

load_pending() {
  state_read "$PENDING_NAME" >"$WORK/pending-old"
  [ -s "$WORK/pending-old" ] || return 0
  while IFS="$TAB" read -r kind lp_name how; do
    # A check reports a unit that did not come up as such, not as drift: the config is applied.
    if [ "$MODE" = check ] && [ "$how" = failed ]; then
      warn "$lp_name: did not bring its unit up at the last apply; the next apply retries it"
      continue
    fi
    case $kind in
      handler) printf '%s\n' "$lp_name" >>"$WORK/notified" ;;
      start) printf '%s\n' "$lp_name" >>"$WORK/started" ;;
      daemon-reload) UNIT_FILES_CHANGED=1; PENDING_RELOAD=1 ;;
    esac
  done <"$WORK/pending-old"
  sort -u -o "$WORK/notified" "$WORK/notified"
  sort -u -o "$WORK/started" "$WORK/started"
  [ ! -s "$WORK/notified" ] && [ ! -s "$WORK/started" ] && [ "$PENDING_RELOAD" = 0 ] ||
    warn "restarts left pending by an earlier apply (cut off, or a unit that did not start) run now"
}

# notify_handler NAME: run it in the handlers step; recorded durably first (apply mode).
notify_handler() {
  grep -qxF -e "$1" "$WORK/notified" && return 0
  printf '%s\n' "$1" >>"$WORK/notified"
  [ "$MODE" = check ] || save_pending
}

# A changed unit file needs a daemon-reload before anything uses it; recorded like a handler.
unit_files_changed() {
  UNIT_FILES_CHANGED=1
  [ "$PENDING_RELOAD" = 1 ] && return 0
  PENDING_RELOAD=1
  [ "$MODE" = check ] || save_pending
}

is_unit_path() {
  case $1 in
    /etc/systemd/system/* | /lib/systemd/system/* | /usr/lib/systemd/system/* | /etc/systemd/user/*) return 0 ;;
  esac
  return 1
}

# Everything PATH's change needs afterwards, recorded before the change is made.
notify_for() { # PATH
  is_unit_path "$1" && unit_files_changed
  records notify >"$WORK/notify"
  while IFS="$TAB" read -r nf_path nf_handler; do
    [ "$nf_path" = "$1" ] && notify_handler "$nf_handler"
  done <"$WORK/notify"
}

# ---- facts --------------------------------------------------------------------------------

# The package database once per run (and again after apt changed it): see packages_list.
gather_packages() {
  packages_list >"$WORK/pkgs" 2>"$WORK/out" || fail $? "cannot read the package database"
}

pkg_line() {
  grep -F -m1 -e "@$1@" "$WORK/pkgs" 2>/dev/null
}

pkg_installed() {
  l=$(pkg_line "$1") || return 1
  status_installed "${l#@*@}"
}

pkg_present() {
  l=$(pkg_line "$1") || return 1
  status_present "${l#@*@}"
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
  # Recorded first: a package syncpi installed is purged again when the plan drops it.
  for p in $missing; do managed_add package "$p" - -; done
  run target apt-get update -q
  # shellcheck disable=SC2086 # names are validated package names, one word each
  run target apt-get install -y -q --no-install-recommends \
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

# The packages "Purg"/"Remv" lines of an apt-get -s simulation name, one per line.
sim_removed() { # FILE
  while IFS=' ' read -r verb name _rest; do
    case $verb in
      Purg | Remv) printf '%s\n' "${name%%:*}" ;;
    esac
  done <"$1"
}

# Packages syncpi installed that the plan no longer installs (nor keeps) leave too, unless
# removing one would take a protected package along (network-manager needs wpasupplicant): that
# one stays installed, with a WARN, and is no longer syncpi's.
leaving_packages() {
  : >"$WORK/leaving"
  managed_list package >"$WORK/had-packages"
  while IFS="$TAB" read -r lv_p _o _w; do
    in_list install "$lv_p" && continue
    if ! pkg_present "$lv_p" || in_list keep "$lv_p"; then managed_del package "$lv_p"; continue; fi
    if ! target apt-get -s -q purge "$lv_p" >"$WORK/sim" 2>&1; then
      warn "package $lv_p: left installed, apt cannot plan its removal"
      managed_del package "$lv_p"
      continue
    fi
    lv_blocked=
    for lv_r in $(sim_removed "$WORK/sim"); do
      lv_why=$(pkg_protection "$lv_r") && { lv_blocked="$lv_r, which is $lv_why"; break; }
    done
    if [ -n "$lv_blocked" ]; then
      warn "package $lv_p: left installed, its removal would take $lv_blocked"
      managed_del package "$lv_p"
      continue
    fi
    printf '%s\n' "$lv_p" >>"$WORK/leaving"
  done <"$WORK/had-packages"
}

step_packages_purge() {
  step packages-purge
  leaving_packages
  present=
  for p in $({ expand_purge; cat "$WORK/leaving"; } | sort -u); do
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
  target apt-get -s -q purge --autoremove $present >"$WORK/sim" 2>"$WORK/out" || {
    rc=$?
    cat "$WORK/sim" >>"$WORK/out"
    fail "$rc" "apt-get could not plan the purge of$present"
  }
  sim_removed "$WORK/sim" >"$WORK/removed"
  while IFS= read -r r; do
    why=$(pkg_protection "$r") && fail - "refusing to purge$present: apt would also remove $r, which is $why"
  done <"$WORK/removed"
  if [ "$MODE" = check ]; then
    while IFS= read -r r; do change package "$r" purge; done <"$WORK/removed"
    return 0
  fi
  # shellcheck disable=SC2086
  run target apt-get purge -y -q --autoremove $present
  gather_packages
  while IFS= read -r r; do change package "$r" purged; done <"$WORK/removed"
  while IFS= read -r r; do managed_del package "$r"; done <"$WORK/leaving"
}

# ---- users --------------------------------------------------------------------------------

# Supplementary groups syncpi added, "USER<TAB>GROUP" per line: only these are ever removed.
GROUPS_OURS_NAME=groups

step_users() {
  step users
  state_read "$GROUPS_OURS_NAME" >"$WORK/groups-ours"
  : >"$WORK/groups-ours-next"
  records group >"$WORK/groups"
  while IFS= read -r g; do
    account_entry group "$g" >/dev/null && continue
    if [ "$MODE" = apply ]; then
      managed_add group "$g" - -
      run groupadd --system "$g"
    fi
    change group "$g" created
  done <"$WORK/groups"
  records user >"$WORK/users"
  while IFS="$TAB" read -r name system home shell; do
    if ! ent=$(account_entry passwd "$name"); then
      if [ "$MODE" = apply ]; then
        managed_add user "$name" - -
        if [ "$system" = 1 ]; then
          run useradd --system --user-group --home-dir "$home" --no-create-home --shell "$shell" "$name"
          if [ ! -d "$home" ]; then
            path_domain "${home%/*}" root "$home"
            run mkdir -p -- "$home"
            run chown -h -- "$name:$(primary_group "$name")" "$home"
            run chmod 750 -- "$home"
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
      if [ "$MODE" = apply ]; then
        # Recorded first: a membership added but not recorded would never be taken away again.
        printf '%s\t%s\n' "$name" "$g" >>"$WORK/groups-ours"
        state_write "$GROUPS_OURS_NAME" "$WORK/groups-ours"
        run usermod --append --groups "$g" "$name"
      fi
      printf '%s\t%s\n' "$name" "$g" >>"$WORK/groups-ours-next"
      change user "$name" "group $g"
    done <"$WORK/ugroups"
  done <"$WORK/users"
  # Memberships syncpi added that the plan no longer lists are removed.
  while IFS="$TAB" read -r name g; do
    grep -qxF -e "$name$TAB$g" "$WORK/groups-ours-next" && continue
    account_entry passwd "$name" >/dev/null && in_group "$name" "$g" || continue
    [ "$MODE" = check ] || run gpasswd --delete "$name" "$g"
    change user "$name" "group $g removed"
  done <"$WORK/groups-ours"
  if [ "$MODE" = apply ] && ! cmp -s "$WORK/groups-ours" "$WORK/groups-ours-next"; then
    state_write "$GROUPS_OURS_NAME" "$WORK/groups-ours-next"
  fi
}

# ---- dirs and files -----------------------------------------------------------------------

# Run a command as ACCOUNT (root: directly). Inside a directory another account controls,
# syncpi writes with that account's rights only: a link it planted there then leads nowhere it
# could not already write, and a swapped component changes nothing root would do.
as_user() { # ACCOUNT CMD...
  au_who=$1
  shift
  if [ "$au_who" = root ]; then "$@"; return; fi
  setpriv --reuid="$au_who" --regid="$(id -g -- "$au_who")" --init-groups -- "$@"
}

# path_domain DIR OWNER WHAT: set WRITER to the account that may write inside DIR, or stop.
# root: every existing component of DIR is a directory owned by root that no other account may
# write. OWNER: from some component on they belong to OWNER, the account WHAT is for; WHAT is
# then written with OWNER's rights, never root's. A symbolic link on the way is followed only when
# root owns it and root's directories hold it (then its target is checked from / again). Anything
# else (a link another account could have planted, a third account's directory, a directory all
# may write) is refused: root writing through it could be sent anywhere.
path_domain() {
  pd_rest=${1#/}
  pd_cur=
  pd_hops=0
  WRITER=root
  while [ -n "$pd_rest" ]; do
    pd_c=${pd_rest%%/*}
    case $pd_rest in */*) pd_rest=${pd_rest#*/} ;; *) pd_rest= ;; esac
    [ -n "$pd_c" ] || continue
    pd_cur=$pd_cur/$pd_c
    # A missing component is created below by WRITER.
    pd_info=$(stat -c '%F|%U|%G|%a' -- "$pd_cur" 2>/dev/null) || break
    pd_type=${pd_info%%|*}
    pd_r=${pd_info#*|}
    pd_own=${pd_r%%|*}
    pd_r=${pd_r#*|}
    pd_grp=${pd_r%%|*}
    pd_mode=${pd_r#*|}
    case $pd_type in
      'symbolic link')
        [ "$WRITER" = root ] && [ "$pd_own" = root ] ||
          fail - "refusing to write $3: $pd_cur is a symbolic link that $pd_own controls; syncpi does not follow it"
        pd_hops=$((pd_hops + 1))
        [ "$pd_hops" -le 40 ] || fail - "refusing to write $3: too many symbolic links at $pd_cur"
        pd_t=$(readlink -f -- "$pd_cur") || fail - "refusing to write $3: $pd_cur is a dangling symbolic link"
        pd_rest=${pd_t#/}${pd_rest:+/$pd_rest}
        pd_cur=
        WRITER=root
        continue
        ;;
      directory) ;;
      *) fail - "refusing to write $3: $pd_cur is not a directory" ;;
    esac
    if [ "$WRITER" = root ] && [ "$pd_own" != root ]; then
      [ "$pd_own" = "$2" ] || fail - "refusing to write $3: $pd_cur belongs to $pd_own, not to root or $2"
      WRITER=$2
    elif [ "$pd_own" != "$WRITER" ]; then
      fail - "refusing to write $3: $pd_cur belongs to $pd_own inside a directory $WRITER controls"
    fi
    pd_o=${pd_mode#"${pd_mode%?}"}
    pd_g=${pd_mode%?}
    pd_g=${pd_g#"${pd_g%?}"}
    case $pd_o in 2 | 3 | 6 | 7) fail - "refusing to write $3: every account may write in $pd_cur" ;; esac
    case $pd_g in
      2 | 3 | 6 | 7)
        [ "$pd_grp" = root ] || [ "$pd_grp" = "$(primary_group "$WRITER")" ] ||
          fail - "refusing to write $3: the group $pd_grp may write in $pd_cur"
        ;;
    esac
  done
}

# Create the missing directories above PATH as WRITER (path_domain ran first); each is recorded
# as syncpi's before it exists, so it goes again once nothing managed is left in it.
ensure_parent() { # PATH
  ep_parent=${1%/*}
  [ -n "$ep_parent" ] || return 0
  [ -d "$ep_parent" ] && return 0
  ep_rest=${ep_parent#/}
  ep_cur=
  while [ -n "$ep_rest" ]; do
    ep_c=${ep_rest%%/*}
    case $ep_rest in */*) ep_rest=${ep_rest#*/} ;; *) ep_rest= ;; esac
    ep_cur=$ep_cur/$ep_c
    [ -d "$ep_cur" ] && continue
    if [ "$MODE" = apply ]; then
      managed_add dir "$ep_cur" new "$WRITER"
      run as_user "$WRITER" mkdir -- "$ep_cur"
    fi
    change dir "$ep_cur" created
  done
}

step_dirs() {
  step dirs
  records dir >"$WORK/dirs"
  while IFS="$TAB" read -r path mode owner group; do
    group=$(resolve_group "$owner" "$group")
    path_domain "${path%/*}" "$owner" "$path"
    if [ -L "$path" ]; then fail - "refusing to manage $path: it is a symbolic link (to $(readlink -- "$path")), expected a directory"; fi
    if [ -e "$path" ] && [ ! -d "$path" ]; then
      fail - "$path exists and is not a directory"
    fi
    if [ ! -d "$path" ]; then
      if [ "$MODE" = apply ]; then
        ensure_parent "$path"
        managed_add dir "$path" new "$owner"
        run as_user "$WRITER" mkdir -- "$path"
        set_meta "$path" "$mode" "$owner" "$group"
      fi
      change dir "$path" created
      continue
    fi
    cur=$(meta_of "$path")
    [ "$cur" = "$mode $owner $group" ] && continue
    if [ "$MODE" = apply ]; then
      if [ "$WRITER" != root ] && [ "${cur#* }" != "$owner ${cur##* }" ]; then
        fail - "refusing to change the owner of $path: it lies in a directory $WRITER controls"
      fi
      set_meta "$path" "$mode" "$owner" "$group"
    fi
    if [ "${cur%% *}" != "$mode" ]; then change dir "$path" mode; else change dir "$path" owner; fi
  done <"$WORK/dirs"
}

# Owner, group and mode of PATH, which is no symbolic link and lies where WRITER may write.
# root: chown -h (never through a link); another account owns what it writes already.
set_meta() { # PATH MODE OWNER GROUP
  if [ "$WRITER" = root ]; then
    run chown -h -- "$3:$4" "$1"
  elif [ "$4" != "$(primary_group "$WRITER")" ]; then
    run as_user "$WRITER" chgrp -h -- "$4" "$1"
  fi
  run as_user "$WRITER" chmod -- "$2" "$1"
}

# Write SRC to PATH so that PATH is at every instant either the old or the new file: a temp file
# with an unpredictable name made by mktemp (O_EXCL) in the same directory, owner and mode set
# before any content is visible under the final name, checked by the plan's validator, data
# flushed, the handlers it notifies recorded, then one rename, then the directory entry flushed.
write_atomic() { # SRC PATH MODE OWNER GROUP
  wa_dir=${2%/*}
  [ -n "$wa_dir" ] || wa_dir=/
  CUR_TMP_AS=$WRITER
  CUR_TMP=$(as_user "$WRITER" mktemp -- "$wa_dir/.syncpi-tmp.XXXXXXXX" 2>"$WORK/out") || fail $? "cannot create a temp file in $wa_dir"
  as_user "$WRITER" sh -c 'cat >"$1"' sh "$CUR_TMP" <"$1" 2>"$WORK/out" || fail $? "cannot write a temp file in $wa_dir"
  set_meta "$CUR_TMP" "$3" "$4" "$5"
  validate_file "$2" "$CUR_TMP"
  run as_user "$WRITER" sync -- "$CUR_TMP"
  notify_for "$2"
  run as_user "$WRITER" mv -f -T -- "$CUR_TMP" "$2"
  CUR_TMP=
  # Lets a test cut the apply (SIGKILL: no trap runs) right after this rename.
  [ "${SYNCPI_TEST_KILL_AFTER_RENAME:-}" != "$2" ] || kill -KILL $$
  run as_user "$WRITER" sync -- "$wa_dir"
}

# The plan's validator of PATH (validate records, "%s" standing for the file to check) runs on
# the new content before it can replace the old file: refused content stops the apply with the
# old file, and whatever it configures, untouched. Not in a chroot: a foreign architecture runs
# under qemu-user there, which lacks the netlink sockets nft -c needs; the build checks these
# files on its own machine before the apply (validateOnHost, src/targets/rootfs.ts).
validate_file() { # PATH CANDIDATE
  [ "$ENV" = live ] || return 0
  vf_path=$1
  vf_file=$2
  records validate >"$WORK/validate"
  set --
  while IFS="$TAB" read -r vp va; do
    [ "$vp" = "$vf_path" ] || continue
    [ "$va" = "%s" ] && va=$vf_file
    set -- "$@" "$va"
  done <"$WORK/validate"
  [ $# -gt 0 ] || return 0
  if ! command -v "$1" >/dev/null 2>&1; then
    # Check mode on a system that lacks the validator's package, which the apply installs first.
    [ "$MODE" = check ] && { warn "cannot check the new $vf_path here: $1 is not installed yet"; return 0; }
    fail - "cannot check the new $vf_path: $1 is not installed; the old file is kept"
  fi
  "$@" >"$WORK/out" 2>&1 || fail $? "the new $vf_path is refused by $1; the old file is kept"
  : >"$WORK/out"
}

show_diff() { # OLD NEW PATH SECRET
  if [ "$4" = 1 ]; then
    printf 'DIFF\t%s\t%s\n' "$3" "(secret content: diff hidden)"
    return 0
  fi
  diff -u --label "$3" --label "$3" -- "$1" "$2" >"$WORK/diff" 2>&1
  while IFS= read -r l || [ -n "$l" ]; do printf 'DIFF\t%s\t%s\n' "$3" "$l"; done <"$WORK/diff"
}

# A run killed between writing its temp file and the rename (SIGKILL, power loss) leaves a
# .syncpi-tmp.* beside a managed file; the managed file itself is intact. Applies to one
# target are serialised, so any such temp file is a leftover.
sweep_stale_temps() {
  while IFS="$TAB" read -r path _mode owner _rest; do
    d=${path%/*}
    [ -n "$d" ] || d=/
    printf '%s\t%s\n' "$d" "$owner"
  done <"$WORK/files" | sort -u >"$WORK/filedirs"
  while IFS="$TAB" read -r d owner; do
    [ -d "$d" ] || continue
    path_domain "$d" "$owner" "$d/"
    # Globbing is off in this script (set -f); the only glob is here, on a checked directory.
    set +f
    for t in "$d"/.syncpi-tmp.*; do
      [ -f "$t" ] || [ -L "$t" ] || continue
      if [ "$MODE" = check ]; then change tempfile "$t" remove; else run as_user "$WRITER" rm -f -- "$t" && change tempfile "$t" removed; fi
    done
    set -f
  done <"$WORK/filedirs"
}

step_files() {
  step files
  records file >"$WORK/files"
  sweep_stale_temps
  while IFS="$TAB" read -r path mode owner group secret src sha; do
    group=$(resolve_group "$owner" "$group")
    src=$BUNDLE/$src
    [ -f "$src" ] || fail - "bundle is missing $src (for $path)"
    path_domain "${path%/*}" "$owner" "$path"
    if [ -d "$path" ] && [ ! -L "$path" ]; then fail - "$path is a directory, expected a file"; fi
    action=
    old=$path
    if [ ! -e "$path" ] && [ ! -L "$path" ]; then
      action=created
      old=/dev/null
    elif [ -L "$path" ] || [ ! -f "$path" ]; then
      # A link is replaced, never followed: its target is nobody's business here. Nor is anything
      # but a regular file read (a FIFO planted in a user's directory would hang the apply).
      action=updated
      old=/dev/null
    elif [ "$(sha_of "$path")" != "$sha" ]; then
      action=updated
    elif [ "$(meta_of "$path")" != "$mode $owner $group" ]; then
      cur=$(meta_of "$path")
      if [ "${cur%% *}" != "$mode" ]; then action=mode; else action=owner; fi
    fi
    if managed_has file "$path"; then :
    elif [ "$action" = created ]; then managed_add file "$path" new "$owner"
    else managed_add file "$path" found "$owner"; fi
    [ -n "$action" ] || continue
    [ "$action" = updated ] && install_changed "$old" "$src" "$path"
    if [ "$MODE" = check ]; then
      case $action in
        created | updated)
          show_diff "$old" "$src" "$path" "$secret"
          validate_file "$path" "$src"
          ;;
      esac
      notify_for "$path"
    else
      case $action in
        created | updated)
          ensure_parent "$path"
          write_atomic "$src" "$path" "$mode" "$owner" "$group"
          ;;
        *)
          if [ "$WRITER" = root ]; then
            notify_for "$path"
            set_meta "$path" "$mode" "$owner" "$group"
          else
            # Where another account controls the directory, the file is replaced, not changed in place.
            write_atomic "$src" "$path" "$mode" "$owner" "$group"
          fi
          ;;
      esac
    fi
    change file "$path" "$action"
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

# ---- kernel command line ------------------------------------------------------------------

# The parameters syncpi owns on the kernel command line (kparam records: NAME VALUE). Only those
# words are edited (kparam.awk); every other byte of the line stays. The line the firmware reads
# is cmdline.txt on the boot partition; Debian's raspi-firmware rebuilds it on every kernel
# upgrade from /etc/default/raspi-extra-cmdline (among others), so there the parameter goes too.
# A change needs a reboot: it is announced (WARN, /run/reboot-required), never done.
REBOOT_FOR=

boot_cmdline() {
  for bc_f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
    if [ -f "$bc_f" ] && [ ! -L "$bc_f" ]; then printf '%s\n' "$bc_f"; return 0; fi
  done
  return 1
}

# Does FILE's command line carry NAME (either spelling)?
kparam_present() { # FILE NAME
  [ -f "$1" ] || return 1
  awk -v mode=remove -v name="$2" -f "$BUNDLE/kparam.awk" "$1" >"$WORK/kp-probe" 2>"$WORK/out" || fail $? "cannot read $1"
  ! cmp -s "$1" "$WORK/kp-probe"
}

# kparam_edit FILE set|remove NAME [VALUE]: one atomic replacement of FILE when its line changes.
# A FILE syncpi had to create (kpfile record) goes again once no parameter is left on it.
kparam_edit() {
  ke_f=$1
  path_domain "${ke_f%/*}" root "$ke_f"
  ke_mode=644 ke_owner=root ke_group=root
  if [ -f "$ke_f" ]; then
    # vfat keeps no owners or modes of its own: what it shows is what the temp file gets
    ke_meta=$(meta_of "$ke_f")
    ke_mode=${ke_meta%% *}
    ke_r=${ke_meta#* }
    ke_owner=${ke_r%% *}
    ke_group=${ke_r#* }
    cat -- "$ke_f" >"$WORK/kp-old" 2>"$WORK/out" || fail $? "cannot read $ke_f"
  else
    [ "$2" = set ] || return 0
    : >"$WORK/kp-old"
  fi
  awk -v mode="$2" -v name="$3" -v value="${4:-}" -f "$BUNDLE/kparam.awk" "$WORK/kp-old" >"$WORK/kp-new" 2>"$WORK/out" ||
    fail $? "cannot edit the kernel command line in $ke_f"
  cmp -s "$WORK/kp-old" "$WORK/kp-new" && return 0
  if [ "$2" = remove ]; then ke_what="removed from $ke_f"
  elif kparam_present "$WORK/kp-old" "$3"; then ke_what="updated in $ke_f"
  else ke_what="set in $ke_f"; fi
  if [ "$MODE" = check ]; then
    show_diff "$WORK/kp-old" "$WORK/kp-new" "$ke_f" 0
  elif [ "$2" = remove ] && managed_has kpfile "$ke_f" && ! grep -q '[^[:space:]]' "$WORK/kp-new"; then
    run rm -f -- "$ke_f"
    managed_del kpfile "$ke_f"
  else
    [ -f "$ke_f" ] || managed_add kpfile "$ke_f" new root
    write_atomic "$WORK/kp-new" "$ke_f" "$ke_mode" "$ke_owner" "$ke_group"
  fi
  [ "$MODE" = check ] || case " $REBOOT_FOR " in *" $3 "*) ;; *) REBOOT_FOR="${REBOOT_FOR:+$REBOOT_FOR }$3" ;; esac
  change kparam "$3" "$ke_what"
}

step_kernel_cmdline() {
  step kernel-cmdline
  records kparam >"$WORK/kparams"
  managed_list kparam >"$WORK/had-kparams"
  [ -s "$WORK/kparams" ] || [ -s "$WORK/had-kparams" ] || return 0
  if ! kc_boot=$(boot_cmdline); then
    [ -s "$WORK/kparams" ] && warn "no cmdline.txt in /boot/firmware or /boot: the kernel parameters $(cut -f1 "$WORK/kparams" | tr '\n' ' ')are not set (not a Raspberry Pi boot partition?)"
    return 0
  fi
  kc_files=$kc_boot
  [ ! -e /etc/kernel/postinst.d/z50-raspi-firmware ] || kc_files="$kc_files /etc/default/raspi-extra-cmdline"
  while IFS="$TAB" read -r kc_name kc_value; do
    if ! managed_has kparam "$kc_name"; then
      # one already on the line before syncpi set it is not syncpi's to take away again
      if kparam_present "$kc_boot" "$kc_name"; then managed_add kparam "$kc_name" found -; else managed_add kparam "$kc_name" new -; fi
    fi
    for kc_f in $kc_files; do kparam_edit "$kc_f" set "$kc_name" "$kc_value"; done
  done <"$WORK/kparams"
  while IFS="$TAB" read -r kc_name kc_origin _w; do
    cut -f1 "$WORK/kparams" | grep -qxF -e "$kc_name" && continue
    if [ "$kc_origin" = new ]; then
      for kc_f in $kc_files; do kparam_edit "$kc_f" remove "$kc_name"; done
    else
      warn "$kc_name: left on the kernel command line, no longer managed (it was there before syncpi managed it)"
    fi
    managed_del kparam "$kc_name"
  done <"$WORK/had-kparams"
  [ -n "$REBOOT_FOR" ] && [ "$ENV" = live ] || return 0
  : >/run/reboot-required 2>/dev/null || :
  warn "reboot needed: the kernel command line changed ($REBOOT_FOR); it takes effect at the next boot"
}

# ---- units --------------------------------------------------------------------------------

step_units() {
  step units
  if [ "$ENV" = live ] && [ "$UNIT_FILES_CHANGED" = 1 ] && [ "$MODE" = apply ]; then
    # New or changed unit files must be loaded before they can be enabled and started.
    run systemctl daemon-reload
    handler_line daemon-reload daemon-reload - ran
    HANDLERS=$((HANDLERS + 1))
    UNIT_FILES_CHANGED=0
    DAEMON_RELOADED=1
    PENDING_RELOAD=0
  fi
  for u in $(records mask); do
    [ "$(unit_state "$u")" = masked ] && continue
    if [ "$MODE" = apply ]; then
      managed_add masked "$u" - -
      if [ "$ENV" = live ]; then run systemctl mask --now "$u"; else run systemctl_files mask "$u"; fi
    fi
    change unit "$u" masked
  done
  for u in $(records disable); do
    case $(unit_state "$u") in
      enabled | enabled-runtime | linked | linked-runtime) ;;
      *) continue ;;
    esac
    if [ "$MODE" = apply ]; then
      if [ "$ENV" = live ]; then run systemctl disable --now "$u"; else run systemctl_files disable "$u"; fi
    fi
    change unit "$u" disabled
  done
  for u in $(records enable); do
    st=$(unit_state "$u")
    if [ "$st" = enabled ] && grep -qxF -e "$u" "$WORK/reinstall"; then
      [ "$MODE" = check ] || run systemctl_files reenable "$u"
      change unit "$u" reenabled
      continue
    fi
    case $st in
      enabled | enabled-runtime | static | alias | indirect | generated) continue ;;
    esac
    # On a live host a newly enabled unit also starts (after the handlers, once); like a
    # handler, that start is recorded before the enable that calls for it.
    printf '%s\n' "$u" >>"$WORK/started"
    if [ "$MODE" = apply ]; then
      managed_add enabled "$u" - -
      save_pending
      [ "$st" = masked ] && run systemctl_files unmask "$u"
      run systemctl_files enable "$u"
    fi
    change unit "$u" enabled
  done
}

# ---- removals -----------------------------------------------------------------------------

# What syncpi put here earlier and the plan no longer holds goes again; nothing else is touched.
# Units are stopped and disabled before their files go; one daemon-reload (in the units step)
# covers removed and written unit files alike.
step_remove() {
  step remove
  records enable >"$WORK/want-enabled"
  records mask >"$WORK/want-masked"
  records disable >"$WORK/want-disabled"
  records file | cut -f1 >"$WORK/want-files"
  records user | cut -f1 >"$WORK/want-users"
  # A directory stays while the plan still names it or anything below it.
  { records dir | cut -f1; cut -f1 "$WORK/want-files"; } |
    awk '{ p = $0; print p; while (sub(/\/[^\/]*$/, "", p) && p != "") print p }' | sort -u >"$WORK/want-dirs"

  managed_list enabled >"$WORK/had"
  while IFS="$TAB" read -r u _o _w; do
    in_file "$u" "$WORK/want-enabled" && continue
    if in_file "$u" "$WORK/want-disabled" || in_file "$u" "$WORK/want-masked"; then managed_del enabled "$u"; continue; fi
    case $(unit_state "$u") in
      enabled | enabled-runtime | linked | linked-runtime)
        if [ "$MODE" = apply ]; then
          if [ "$ENV" = live ]; then run systemctl disable --now "$u"; else run systemctl_files disable "$u"; fi
        fi
        change unit "$u" disabled
        ;;
    esac
    managed_del enabled "$u"
  done <"$WORK/had"

  managed_list masked >"$WORK/had"
  while IFS="$TAB" read -r u _o _w; do
    in_file "$u" "$WORK/want-masked" && continue
    if [ "$(unit_state "$u")" = masked ]; then
      [ "$MODE" = check ] || run systemctl_files unmask "$u"
      change unit "$u" unmasked
    fi
    managed_del masked "$u"
  done <"$WORK/had"

  managed_list file >"$WORK/had"
  while IFS="$TAB" read -r path origin owner; do
    in_file "$path" "$WORK/want-files" && continue
    if [ "$origin" != new ]; then
      warn "$path: left in place, no longer managed (it was there before syncpi managed it)"
      managed_del file "$path"
      continue
    fi
    if [ ! -e "$path" ] && [ ! -L "$path" ]; then managed_del file "$path"; continue; fi
    if [ -d "$path" ] && [ ! -L "$path" ]; then
      warn "$path: left in place, no longer managed (it is a directory now)"
      managed_del file "$path"
      continue
    fi
    path_domain "${path%/*}" "$owner" "$path"
    remove_unit_of "$path"
    removed_notifies "$path"
    [ "$MODE" = check ] || run as_user "$WRITER" rm -f -- "$path"
    printf '%s\n' "$path" >>"$WORK/removing"
    if [ "$MODE" = check ]; then change file "$path" remove; else change file "$path" removed; fi
    managed_del file "$path"
  done <"$WORK/had"

  # Deepest first, and only once empty: a directory is never emptied to be removed.
  managed_list dir | sort -r >"$WORK/had"
  while IFS="$TAB" read -r path _o owner; do
    in_file "$path" "$WORK/want-dirs" && continue
    if [ -L "$path" ] || [ ! -d "$path" ]; then managed_del dir "$path"; continue; fi
    path_domain "${path%/*}" "$owner" "$path"
    if [ "$MODE" = check ]; then
      if dir_would_empty "$path"; then
        printf '%s\n' "$path" >>"$WORK/removing"
        change dir "$path" remove
      else
        warn "$path: left in place, it holds files syncpi did not put there"
      fi
    elif as_user "$WRITER" rmdir -- "$path" 2>/dev/null; then
      change dir "$path" removed
      managed_del dir "$path"
    else
      warn "$path: left in place, it holds files syncpi did not put there"
    fi
  done <"$WORK/had"

  # Accounts last: nothing above runs as them any more. Their homes and files stay.
  remove_accounts user "$WORK/want-users" passwd userdel
  remove_accounts group "$WORK/groups" group groupdel
}

# The accounts of KIND (user|group) syncpi created that the plan no longer wants (WANTED, a file
# of names), deleted with DELETE; one gone by other means is only forgotten.
remove_accounts() { # KIND WANTED DATABASE DELETE
  managed_list "$1" >"$WORK/had"
  while IFS="$TAB" read -r acct _o _w; do
    in_file "$acct" "$2" && continue
    if ! account_entry "$3" "$acct" >/dev/null; then managed_del "$1" "$acct"; continue; fi
    if [ "$MODE" = check ]; then change "$1" "$acct" remove; continue; fi
    if "$4" -- "$acct" >"$WORK/out" 2>&1; then
      change "$1" "$acct" removed
      managed_del "$1" "$acct"
    else
      warn "$1 $acct: not removed ($(head -n 1 "$WORK/out")); the next apply retries"
    fi
    : >"$WORK/out"
  done <"$WORK/had"
}

in_file() { # LINE FILE
  grep -qxF -e "$1" "$2"
}

# A unit file about to go: its unit is stopped and disabled first, so no link points at nothing
# and nothing keeps running from a file that is gone.
remove_unit_of() { # PATH
  is_unit_path "$1" || return 0
  unit_files_changed
  ru_u=${1##*/}
  case $(unit_state "$ru_u") in
    enabled | enabled-runtime | linked | linked-runtime)
      if [ "$MODE" = apply ]; then
        if [ "$ENV" = live ]; then run systemctl disable --now "$ru_u"; else run systemctl_files disable "$ru_u"; fi
      fi
      change unit "$ru_u" disabled
      ;;
    *)
      if [ "$ENV" = live ] && [ "$(unit_activity "$ru_u")" = active ]; then
        [ "$MODE" = check ] || run systemctl stop "$ru_u"
        change unit "$ru_u" stopped
      fi
      ;;
  esac
}

# The handlers a removed file notified when it was applied (from the record of that plan).
removed_notifies() { # PATH
  P=$1 awk -F "$TAB" '$1 == "notify" && $2 == ENVIRON["P"] { print $3 }' "$WORK/managed" >"$WORK/rnotify"
  while IFS= read -r rn_h; do notify_handler "$rn_h"; done <"$WORK/rnotify"
}

# Check mode: would DIR be empty once what this run removes is gone?
dir_would_empty() { # DIR
  ls -A -- "$1" >"$WORK/entries" 2>/dev/null || return 1
  while IFS= read -r dw_e; do
    in_file "$1/$dw_e" "$WORK/removing" || return 1
  done <"$WORK/entries"
  return 0
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
      set --
      while IFS="$TAB" read -r hname arg; do
        [ "$hname" = "$want" ] && set -- "$@" "$arg"
      done <"$WORK/hargs"
      [ $# -gt 0 ] || fail - "handler has no command"
      run target "$@"
      ;;
    *) fail - "unknown handler action $2" ;;
  esac
}

# A handler notified by a file that left the plan may be no handler of this plan any more
# (nm-reload once the last Wi-Fi network is gone): its definition comes from the record of the
# last plan. Restarts and reloads are not taken over: their unit left along with the file.
recorded_handlers() {
  cut -f1 "$WORK/handlers" >"$WORK/handler-names"
  while IFS= read -r n; do
    grep -qxF -e "$n" "$WORK/handler-names" && continue
    N=$n awk -F "$TAB" -v OFS="$TAB" '$1 == "handler" && $2 == ENVIRON["N"] && $3 != "restart" && $3 != "reload" { print $2, $3, $4, $5 }' "$WORK/managed" >>"$WORK/handlers"
    N=$n awk -F "$TAB" -v OFS="$TAB" '$1 == "handlerarg" && $2 == ENVIRON["N"] { print $2, $3 }' "$WORK/managed" >>"$WORK/hargs"
  done <"$WORK/notified"
}

step_handlers() {
  step handlers
  : >"$WORK/restarted"
  : >"$WORK/failed-handlers"
  UNITS_FAILED=0
  # Changed unit files need a daemon-reload (on a live apply the units step already did it).
  if [ "$UNIT_FILES_CHANGED" = 1 ]; then
    if [ "$ENV" = chroot ]; then handler_line daemon-reload daemon-reload - skipped-chroot
    else handler_line daemon-reload daemon-reload - would-run; fi
    DAEMON_RELOADED=1
  fi
  records handler >"$WORK/handlers"
  records handlerarg >"$WORK/hargs"
  recorded_handlers
  while IFS="$TAB" read -r name action unit liveonly; do
    handler_notified "$name" || continue
    # One daemon-reload per apply, reported once.
    if [ "$action" = daemon-reload ] && [ "$DAEMON_RELOADED" = 1 ]; then continue; fi
    if [ "$ENV" = chroot ]; then
      case $action in
        restart | reload | daemon-reload | sysctl) liveonly=1 ;;
      esac
      if [ "$liveonly" = 1 ]; then handler_line "$name" "$action" "$unit" skipped-chroot; continue; fi
    fi
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
  [ "$ENV" = live ] || : >"$WORK/started"
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
    state_remove "$PENDING_NAME"
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
managed_load
load_pending
step_packages_install
step_packages_purge
step_users
step_dirs
step_files
step_kernel_cmdline
step_remove
step_units
step_handlers
managed_keep_handlers
summary ok
exit 0
