#!/bin/sh
# The system commands the converger asks and tells (dpkg-query, apt-get, getent, id, the passwd
# tools, systemctl, journalctl, systemd-detect-virt), faked for the converger cases: linked
# under each command's name in $SYNCPI_FAKE_SYSTEM/bin, answering from the case's facts in
# $SYNCPI_FAKE_SYSTEM/facts and changing them the way the real command changes the system, so a
# second run sees what the first one did. Each call is logged to $SYNCPI_FAKE_SYSTEM/calls as
# "R" (only reads) or "W" (changes something, or would if it succeeded), a tab, then its argv
# joined by tabs. Messages and exit codes follow the real commands where the converger reads them.
#
# Facts (tab-separated, one record per line):
#   packages  NAME STATUS ESSENTIAL PRIORITY TAKES   STATUS as dpkg abbreviates it ("ii ", "rc ")
#             or "-" (not in dpkg's database, installable); TAKES: what purging it also removes
#             (comma-separated) or "-"
#   passwd, group  as getent prints them
#   units     NAME ENABLEMENT UNDER ACTIVE STARTS    UNDER: the enablement a mask hides ("-");
#             STARTS 1 or 0 (a start fails; its log is units.log.NAME)
#   container a file whose presence makes systemd-detect-virt --container say yes
#   commands  other commands (a handler's argv[0]) that only succeed, one name a line

set -u
set -f
F=$SYNCPI_FAKE_SYSTEM/facts
TAB=$(printf '\t')
cmd=${0##*/}

log() { # R|W ARGV...
  line=$1$TAB$cmd
  shift
  for a in "$@"; do line=$line$TAB$a; done
  printf '%s\n' "$line" >>"$SYNCPI_FAKE_SYSTEM/calls"
}

# field FILE KEY COL: column COL of the record whose first field is KEY (status 1: none).
field() {
  awk -F "$TAB" -v k="$2" -v c="$3" '$1 == k { print $c; f = 1; exit } END { exit !f }' "$1"
}

# set_field FILE KEY COL VALUE: that column of that record replaced.
set_field() {
  awk -F "$TAB" -v OFS="$TAB" -v k="$2" -v c="$3" -v v="$4" '$1 == k { $c = v } { print }' "$1" >"$1.next" && mv "$1.next" "$1"
}

# ent_set FILE NAME LINE|"": the getent-style record of NAME replaced by LINE (or removed).
ent_set() {
  awk -F : -v k="$2" -v l="$3" '$1 == k { if (l != "") print l; f = 1; next } { print } END { if (!f && l != "") print l }' "$1" >"$1.next" && mv "$1.next" "$1"
}

ent() { # FILE NAME
  grep -m1 "^$2:" "$1"
}

# Next free id at or above FROM in the third field of FILE.
next_id() { # FILE FROM
  awk -F : -v n="$2" '{ used[$3] = 1 } END { while (used[n]) n++; print n }' "$1"
}

case $cmd in
  dpkg-query)
    log R "$@"
    fmt=
    names=
    for a in "$@"; do
      case $a in
        -W) ;;
        -f=*) fmt=${a#-f=} ;;
        *) names="$names $a" ;;
      esac
    done
    out() { # NAME STATUS ESS PRIO
      printf '%s' "$fmt" | sed -e "s/\${Package}/$1/g" -e "s/\${db:Status-Abbrev}/$2/g" -e "s/\${Essential}/$3/g" -e "s/\${Priority}/$4/g" -e 's/\\n/\n/g'
    }
    if [ -z "$names" ]; then
      while IFS="$TAB" read -r n st ess prio _t; do
        [ "$st" = - ] || out "$n" "$st" "$ess" "$prio"
      done <"$F/packages"
      exit 0
    fi
    rc=0
    for n in $names; do
      st=$(field "$F/packages" "$n" 2)
      if [ -z "$st" ] || [ "$st" = - ]; then
        echo "dpkg-query: no packages found matching $n" >&2
        rc=1
        continue
      fi
      out "$n" "$st" "$(field "$F/packages" "$n" 3)" "$(field "$F/packages" "$n" 4)"
    done
    exit "$rc"
    ;;

  apt-get)
    sim=0 verb= pkgs= skip=0
    for a in "$@"; do
      if [ "$skip" = 1 ]; then skip=0; continue; fi
      case $a in
        -s) sim=1 ;;
        -o) skip=1 ;;
        -*) ;;
        *) if [ -z "$verb" ]; then verb=$a; else pkgs="$pkgs $a"; fi ;;
      esac
    done
    if [ "$sim" = 1 ]; then log R "$@"; else log W "$@"; fi
    present() { case $(field "$F/packages" "$1" 2) in ''|-|?[nc]*) return 1 ;; esac; return 0; }
    case $verb in
      update) echo "Reading package lists..."; exit 0 ;;
      install)
        for p in $pkgs; do
          field "$F/packages" "$p" 1 >/dev/null || { echo "E: Unable to locate package $p"; exit 100; }
        done
        for p in $pkgs; do set_field "$F/packages" "$p" 2 'ii '; done
        exit 0
        ;;
      purge)
        # What purging takes along: each named package and, transitively, what it takes.
        gone=
        todo=$pkgs
        while [ -n "$todo" ]; do
          set -- $todo
          p=$1
          shift
          todo=$*
          case " $gone " in *" $p "*) continue ;; esac
          present "$p" || continue
          gone="$gone $p"
          t=$(field "$F/packages" "$p" 5)
          [ "$t" = - ] || todo="$todo $(printf '%s' "$t" | tr , ' ')"
        done
        for p in $gone; do
          if [ "$sim" = 1 ]; then echo "Purg $p [1.0-1]"; else set_field "$F/packages" "$p" 2 -; fi
        done
        exit 0
        ;;
    esac
    echo "E: fake apt-get does not know '$verb'" >&2
    exit 100
    ;;

  getent)
    log R "$@"
    [ -f "$F/$1" ] || exit 1
    ent "$F/$1" "$2" || exit 2
    ;;

  id)
    case ${1:-} in -gn | -nG | -g) ;; *) exec /usr/bin/id "$@" ;; esac
    log R "$@"
    opt=$1
    shift
    [ "${1:-}" = -- ] && shift
    pw=$(ent "$F/passwd" "$1") || { echo "id: '$1': no such user" >&2; exit 1; }
    gid=$(printf '%s\n' "$pw" | cut -d: -f4)
    pg=$(awk -F : -v g="$gid" '$3 == g { print $1; exit }' "$F/group")
    case $opt in
      -g) echo "$gid" ;;
      -gn) echo "$pg" ;;
      -nG)
        printf '%s' "$pg"
        awk -F : -v u="$1" -v pg="$pg" '$1 != pg { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) printf " %s", $1 }' "$F/group"
        echo
        ;;
    esac
    ;;

  groupadd)
    log W "$@"
    for g; do :; done
    ent "$F/group" "$g" >/dev/null && { echo "groupadd: group '$g' already exists" >&2; exit 9; }
    echo "$g:x:$(next_id "$F/group" 900):" >>"$F/group"
    ;;

  useradd)
    log W "$@"
    sys=0 home= shell=/bin/sh
    while [ $# -gt 1 ]; do
      case $1 in
        --system) sys=1 ;;
        --home-dir) home=$2; shift ;;
        --shell) shell=$2; shift ;;
      esac
      shift
    done
    u=$1
    ent "$F/passwd" "$u" >/dev/null && { echo "useradd: user '$u' already exists" >&2; exit 9; }
    ent "$F/group" "$u" >/dev/null && { echo "useradd: group $u exists" >&2; exit 9; }
    from=1000
    [ "$sys" = 1 ] && from=900
    uid=$(next_id "$F/passwd" "$from")
    gid=$(next_id "$F/group" "$from")
    echo "$u:x:$gid:" >>"$F/group"
    echo "$u:x:$uid:$gid::${home:-/home/$u}:$shell" >>"$F/passwd"
    ;;

  usermod)
    log W "$@"
    for u; do :; done
    pw=$(ent "$F/passwd" "$u") || { echo "usermod: user '$u' does not exist" >&2; exit 6; }
    case $1 in
      --home) ent_set "$F/passwd" "$u" "$(printf '%s\n' "$pw" | awk -F : -v OFS=: -v h="$2" '{ $6 = h; print }')" ;;
      --shell) ent_set "$F/passwd" "$u" "$(printf '%s\n' "$pw" | awk -F : -v OFS=: -v s="$2" '{ $7 = s; print }')" ;;
      --append)
        gr=$(ent "$F/group" "$3") || { echo "usermod: group '$3' does not exist" >&2; exit 6; }
        ent_set "$F/group" "$3" "$(printf '%s\n' "$gr" | awk -F : -v OFS=: -v u="$u" '{ $4 = ($4 == "" ? u : $4 "," u); print }')"
        ;;
      *) echo "usermod: fake does not know $1" >&2; exit 2 ;;
    esac
    ;;

  gpasswd)
    log W "$@"
    [ "$1" = --delete ] || { echo "gpasswd: fake does not know $1" >&2; exit 2; }
    gr=$(ent "$F/group" "$3") || { echo "gpasswd: group '$3' does not exist" >&2; exit 3; }
    ent_set "$F/group" "$3" "$(printf '%s\n' "$gr" | awk -F : -v OFS=: -v u="$2" '{ n = split($4, m, ","); o = ""; for (i = 1; i <= n; i++) if (m[i] != u) o = (o == "" ? m[i] : o "," m[i]); $4 = o; print }')"
    echo "Removing user $2 from group $3"
    ;;

  userdel)
    log W "$@"
    for u; do :; done
    pw=$(ent "$F/passwd" "$u") || { echo "userdel: user '$u' does not exist" >&2; exit 6; }
    gid=$(printf '%s\n' "$pw" | cut -d: -f4)
    ent_set "$F/passwd" "$u" ""
    # Like USERGROUPS_ENAB: the user's own group goes too when nobody else is in it.
    gr=$(ent "$F/group" "$u") && [ "$(printf '%s\n' "$gr" | cut -d: -f3)" = "$gid" ] && [ -z "$(printf '%s\n' "$gr" | cut -d: -f4)" ] &&
      ent_set "$F/group" "$u" ""
    exit 0
    ;;

  groupdel)
    log W "$@"
    for g; do :; done
    gr=$(ent "$F/group" "$g") || { echo "groupdel: group '$g' does not exist" >&2; exit 6; }
    gid=$(printf '%s\n' "$gr" | cut -d: -f3)
    owner=$(awk -F : -v g="$gid" '$4 == g { print $1; exit }' "$F/passwd")
    [ -z "$owner" ] || { echo "groupdel: cannot remove the primary group of user '$owner'" >&2; exit 8; }
    ent_set "$F/group" "$g" ""
    ;;

  systemctl)
    now=0 verb= unit=
    for a in "$@"; do
      case $a in
        --now) now=1 ;;
        --root=* | --quiet | --value | -p | Result) ;;
        *) if [ -z "$verb" ]; then verb=$a; else unit=$a; fi ;;
      esac
    done
    case $verb in is-enabled | is-active | show) log R "$@" ;; *) log W "$@" ;; esac
    en=$(field "$F/units" "$unit" 2) || en=
    case $verb in
      daemon-reload) exit 0 ;;
      is-enabled)
        [ -n "$en" ] && [ "$en" != not-found ] || { echo "Failed to get unit file state for $unit: No such file or directory" >&2; exit 1; }
        echo "$en"
        case $en in enabled | enabled-runtime | static | alias | indirect | generated) exit 0 ;; esac
        exit 1
        ;;
      is-active)
        act=$(field "$F/units" "$unit" 4) || act=inactive
        echo "$act"
        [ "$act" = active ]
        exit
        ;;
      show)
        if [ "$(field "$F/units" "$unit" 5)" = 0 ]; then echo exit-code; else echo success; fi
        exit 0
        ;;
    esac
    # Everything below names a unit file that has to exist (a mask makes one).
    if [ -z "$en" ] || [ "$en" = not-found ]; then
      [ "$verb" = mask ] || { echo "Failed to $verb unit: Unit $unit not found." >&2; exit 5; }
      grep -q "^$unit$TAB" "$F/units" || printf '%s\tnot-found\t-\tinactive\t1\n' "$unit" >>"$F/units"
    fi
    start() {
      if [ "$(field "$F/units" "$unit" 5)" = 0 ]; then
        set_field "$F/units" "$unit" 4 failed
        echo "Job for $unit failed because the control process exited with error code." >&2
        exit 1
      fi
      set_field "$F/units" "$unit" 4 active
    }
    case $verb in
      enable | reenable)
        [ "$en" = masked ] && { echo "Failed to enable unit: Unit file /etc/systemd/system/$unit is masked." >&2; exit 1; }
        [ "$en" = static ] || set_field "$F/units" "$unit" 2 enabled
        [ "$now" = 0 ] || start
        ;;
      disable)
        case $en in enabled | enabled-runtime | linked | linked-runtime) set_field "$F/units" "$unit" 2 disabled ;; esac
        [ "$now" = 0 ] || set_field "$F/units" "$unit" 4 inactive
        ;;
      mask)
        [ "$en" = masked ] || { set_field "$F/units" "$unit" 3 "${en:-not-found}"; set_field "$F/units" "$unit" 2 masked; }
        [ "$now" = 0 ] || set_field "$F/units" "$unit" 4 inactive
        ;;
      unmask)
        if [ "$en" = masked ]; then
          set_field "$F/units" "$unit" 2 "$(field "$F/units" "$unit" 3)"
          set_field "$F/units" "$unit" 3 -
        fi
        ;;
      start | restart | reload-or-restart)
        [ "$en" = masked ] && { echo "Failed to $verb $unit: Unit $unit is masked." >&2; exit 1; }
        start
        ;;
      stop) set_field "$F/units" "$unit" 4 inactive ;;
      *) echo "fake systemctl does not know $verb" >&2; exit 1 ;;
    esac
    exit 0
    ;;

  journalctl)
    log R "$@"
    for u; do :; done
    [ -f "$F/units.log.$u" ] && cat "$F/units.log.$u"
    exit 0
    ;;

  systemd-detect-virt)
    log R "$@"
    [ -e "$F/container" ]
    ;;

  *)
    # A command a case's handler runs (facts/commands lists it): it only succeeds.
    if grep -qxF -e "$cmd" "$F/commands" 2>/dev/null; then log W "$@"; exit 0; fi
    echo "fake-system: no fake for $cmd" >&2
    exit 127
    ;;
esac
