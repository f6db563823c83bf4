# syncpi facts: how apply.sh and verify.sh read the system they run on, from one place, so a
# check judges a package, a unit or an account exactly as the apply that made it did.
#
# Sourced by both (". BUNDLE/facts.sh") once ENV (chroot|live) is known. Defines functions and
# the record location only; prints nothing and changes nothing. POSIX sh: in an image of another
# architecture it runs on the building machine's dash and coreutils (SYNCPI_NATIVE, see
# apply.sh), everywhere else on the system's own.

# ---- where the records live ---------------------------------------------------------------

# What syncpi remembers on a system (apply.sh: "what the system remembers"), and the only
# account that may own that directory.
SYNCPI_STATE=/var/lib/syncpi
SYNCPI_STATE_UID=0

# Test seam, for the converger cases (test/unit/converger-cases.test.ts), which run these
# scripts as an ordinary user against fake system commands: only a run that is NOT root and is
# given SYNCPI_FAKE_SYSTEM=DIR takes its commands from DIR/bin first and keeps its records in
# DIR/state (owned by that user). A real apply always runs as root (the bundle runs under sudo
# or as root, in a chroot or over SSH), and as root the variable is ignored: nothing can point a
# real converger at other commands or other records. Without root it could change nothing anyway.
if [ -n "${SYNCPI_FAKE_SYSTEM:-}" ] && [ "$(id -u)" != 0 ]; then
  PATH=$SYNCPI_FAKE_SYSTEM/bin:$PATH
  TARGET_PATH=$SYNCPI_FAKE_SYSTEM/bin:$TARGET_PATH
  export PATH
  SYNCPI_STATE=$SYNCPI_FAKE_SYSTEM/state
  SYNCPI_STATE_UID=$(id -u)
fi

# ---- packages -----------------------------------------------------------------------------

# One line per known package: @NAME@STATUS|ESSENTIAL|PRIORITY. "@" appears in no package name
# nor in the other fields, so "@NAME@" matches exactly one package's line.
packages_list() {
  dpkg-query -W -f='@${Package}@${db:Status-Abbrev}|${Essential}|${Priority}\n'
}

# dpkg's status abbreviation of one package ("ii ", "rc ", …); nothing when dpkg knows none.
package_status() { # NAME
  dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null
}

# Installed and configured (what "install" converges to; "package-present" passes).
status_installed() { # STATUS
  case $1 in
    ?[iWt]*) return 0 ;;
  esac
  return 1
}

# Anything on disk beyond leftover config files (what "purge" converges away from).
status_present() { # STATUS
  case $1 in
    ?[nc]* | '') return 1 ;;
  esac
  return 0
}

# ---- units --------------------------------------------------------------------------------

# A program of the system's own that starts others (apt-get and its maintainer scripts,
# systemctl and its SysV helper, a handler's command), with the system's PATH alone: in an image
# of another architecture nothing it starts may find the building machine's tools.
target() {
  env PATH="$TARGET_PATH" "$@"
}

# systemctl on unit files: in a chroot no manager runs, so it reads the files under / itself.
systemctl_files() {
  if [ "$ENV" = chroot ]; then target systemctl --root=/ "$@"; else systemctl "$@"; fi
}

# What `is-enabled` says of UNIT (enabled, static, masked, …), "not-found" when it says nothing.
unit_state() { # UNIT
  us_s=$(systemctl_files is-enabled "$1" 2>/dev/null) || true
  printf '%s\n' "${us_s:-not-found}"
}

# What `is-active` says of UNIT on a running system (active, inactive, failed, …).
unit_activity() { # UNIT
  ua_s=$(systemctl is-active "$1" 2>/dev/null) || true
  printf '%s\n' "${ua_s:-unknown}"
}

# ---- accounts -----------------------------------------------------------------------------

# The passwd or group entry of NAME; status 1 when there is none.
account_entry() { # passwd|group NAME
  getent "$1" "$2" 2>/dev/null
}

# Primary group of a user, or the user's own name when it does not exist yet (check mode).
primary_group() { # USER
  pg_g=$(id -gn "$1" 2>/dev/null) || pg_g=$1
  printf '%s\n' "$pg_g"
}

in_group() { # USER GROUP
  for ig_have in $(id -nG "$1" 2>/dev/null); do [ "$ig_have" = "$2" ] && return 0; done
  return 1
}
