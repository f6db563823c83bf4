#!/bin/sh
# syncpi verify: runs the bundle's checks on the system it runs on and prints one line each.
#
#   sh verify.sh [--chroot|--live] BUNDLE_DIR
#
# --chroot (an image's root filesystem): only what can be judged from files is checked; checks
# that need the running system (service active, mounts, live sysctl values) are skipped.
# Checks that must run from another machine (http, ssh-password-refused) are always reported
# as "remote" for the caller to run. Output protocol: see README.md.

set -u
set -f
# SYNCPI_NATIVE and TARGET_PATH: as in apply.sh.
TARGET_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PATH=${SYNCPI_NATIVE:+$SYNCPI_NATIVE:}$TARGET_PATH
LC_ALL=C
export PATH LC_ALL
TAB=$(printf '\t')
ENV=live
BUNDLE=

while [ $# -gt 0 ]; do
  case $1 in
    --chroot) ENV=chroot ;;
    --live) ENV=live ;;
    -*) printf 'FAIL\targs\t-\tunknown option %s\n' "$1"; exit 2 ;;
    *) BUNDLE=$1 ;;
  esac
  shift
done
MANIFEST=${BUNDLE:-.}/manifest
IFS= read -r header <"$MANIFEST" 2>/dev/null || header=
if [ "$header" != "syncpi-bundle${TAB}1" ]; then
  printf 'FAIL\targs\t-\tno syncpi bundle manifest at %s\n' "$MANIFEST"
  exit 2
fi
if [ ! -f "${BUNDLE:-.}/facts.sh" ]; then
  printf 'FAIL\targs\t-\tno facts.sh in %s\n' "${BUNDLE:-.}"
  exit 2
fi
# The facts are read as apply.sh reads them: a check judges by the apply's own rules.
# shellcheck source=provision/facts.sh
. "${BUNDLE:-.}/facts.sh"

PASS=0
FAILED=0
SKIP=0
printf 'PROTO\t1\tverify\tenv=%s\n' "$ENV"

result() { # ID STATUS DETAIL
  printf 'CHECK\t%s\t%s\t%s\n' "$1" "$2" "$3"
  case $2 in
    pass) PASS=$((PASS + 1)) ;;
    fail) FAILED=$((FAILED + 1)) ;;
    *) SKIP=$((SKIP + 1)) ;;
  esac
}

verdict() { # ID OK DETAIL
  if [ "$2" = 1 ]; then result "$1" pass "$3"; else result "$1" fail "$3"; fi
}

# The value a key gets from the sysctl.d files, read in the order systemd-sysctl applies them
# (last assignment wins; /etc overrides /run and /usr/lib files of the same name).
configured_sysctl() { # KEY
  val=
  set +f
  for f in /usr/lib/sysctl.d/*.conf /lib/sysctl.d/*.conf /run/sysctl.d/*.conf /etc/sysctl.d/*.conf /etc/sysctl.conf; do
    [ -f "$f" ] || continue
    while IFS= read -r l || [ -n "$l" ]; do
      case $l in '#'* | ';'* | '') continue ;; esac
      k=${l%%=*}
      v=${l#*=}
      [ "$k" = "$l" ] && continue
      k=$(printf '%s' "$k" | tr -d ' \t')
      v=$(printf '%s' "$v" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
      [ "$k" = "$1" ] && val=$v
    done <"$f"
  done
  set -f
  printf '%s\n' "$val"
}

fstab_has() { # PATH SPEC
  [ -f /etc/fstab ] || return 1
  while read -r spec file _rest; do
    case $spec in '#'* | '') continue ;; esac
    [ "$file" = "$1" ] && [ "$spec" = "$2" ] && return 0
  done </etc/fstab
  return 1
}

while IFS= read -r line || [ -n "$line" ]; do
  case $line in "check$TAB"*) ;; *) continue ;; esac
  rest=${line#check"$TAB"}
  id=${rest%%"$TAB"*}
  rest=${rest#*"$TAB"}
  kind=${rest%%"$TAB"*}
  args=${rest#"$kind"}
  args=${args#"$TAB"}
  # Fields of the check after its kind; none is empty ("-" stands for "not given").
  IFS=$TAB read -r a1 a2 a3 a4 <<EOF
$args
EOF
  case $kind in
    service-active)
      if [ "$ENV" = chroot ]; then result "$id" skip "offline"; continue; fi
      st=$(unit_activity "$a1")
      ok=0; [ "$st" = active ] && ok=1
      verdict "$id" "$ok" "$a1 is $st"
      ;;
    service-enabled)
      st=$(unit_state "$a1")
      ok=0
      case $st in enabled | enabled-runtime | static | alias | indirect) ok=1 ;; esac
      verdict "$id" "$ok" "$a1 is $st"
      ;;
    file)
      if [ ! -f "$a1" ]; then verdict "$id" 0 "$a1 is missing"; continue; fi
      meta=$(stat -c '%a %U' -- "$a1")
      ok=1
      detail="$a1 mode ${meta% *} owner ${meta#* }"
      [ "$a2" = - ] || [ "${meta% *}" = "$a2" ] || ok=0
      [ "$a3" = - ] || [ "${meta#* }" = "$a3" ] || ok=0
      if [ "$a4" != - ]; then
        s=$(sha256sum <"$a1")
        [ "${s%% *}" = "$a4" ] || { ok=0; detail="$detail, content differs"; }
      fi
      verdict "$id" "$ok" "$detail"
      ;;
    package-present)
      st=$(package_status "$a1") || st=
      ok=0
      status_installed "$st" && ok=1
      verdict "$id" "$ok" "$a1 status '${st:-unknown}'"
      ;;
    package-absent)
      st=$(package_status "$a1") || st=
      ok=1
      status_present "$st" && ok=0
      verdict "$id" "$ok" "$a1 status '${st:-not known}'"
      ;;
    mount)
      if [ "$ENV" = chroot ]; then result "$id" skip "offline"; continue; fi
      ok=0
      while read -r _d mp _r; do [ "$mp" = "$a1" ] && ok=1; done </proc/self/mounts
      verdict "$id" "$ok" "$a1 $( [ "$ok" = 1 ] && echo mounted || echo 'not mounted')"
      ;;
    fstab)
      ok=0
      fstab_has "$a1" "$a2" && ok=1
      verdict "$id" "$ok" "fstab entry $a2 on $a1"
      ;;
    sysctl)
      if [ "$ENV" = chroot ]; then
        v=$(configured_sysctl "$a1")
        detail="configured $a1 = ${v:-unset}"
      else
        f=/proc/sys/$(printf '%s' "$a1" | tr . /)
        v=$(cat "$f" 2>/dev/null | tr '\t' ' ') || v=
        detail="$a1 = ${v:-unreadable}"
      fi
      ok=0
      [ "$v" = "$a2" ] && ok=1
      verdict "$id" "$ok" "$detail"
      ;;
    command)
      # a1 = liveOnly (0/1), a2 = expected exit code; argv in checkarg records.
      if [ "$ENV" = chroot ] && [ "$a1" = 1 ]; then result "$id" skip "offline"; continue; fi
      set --
      while IFS= read -r cl || [ -n "$cl" ]; do
        case $cl in "checkarg$TAB$id$TAB"*) set -- "$@" "${cl#checkarg"$TAB$id$TAB"}" ;; esac
      done <"$MANIFEST"
      "$@" </dev/null >/dev/null 2>&1
      rc=$?
      ok=0
      [ "$rc" = "$a2" ] && ok=1
      verdict "$id" "$ok" "exit $rc (expected $a2)"
      ;;
    http | ssh-password-refused) result "$id" remote "runs from the controlling machine" ;;
    *) result "$id" skip "unknown check kind $kind" ;;
  esac
done <"$MANIFEST"

printf 'SUMMARY\tverify\tpassed=%s\tfailed=%s\tskipped=%s\n' "$PASS" "$FAILED" "$SKIP"
[ "$FAILED" = 0 ] || exit 1
exit 0
