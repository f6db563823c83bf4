#!/bin/sh
# Applies the per-card settings `syncpi flash` wrote to the boot partition, once, on first boot:
# hostname, SSH public keys for the admin user, Wi-Fi. Then deletes the file (it holds the PSK).
#
# The settings file is untrusted data (anyone with the card can edit it): each line is split at
# the first "=", each value must match a strict pattern, and nothing from it is ever evaluated,
# sourced or used as a path. Invalid lines are reported and skipped; valid ones still apply.
#
# ROOT=/some/dir applies to a root file system tree instead of the running system (used by tests
# and image builds); then nothing on the running system is touched.
set -eu
LC_ALL=C
export LC_ALL
umask 022

ROOT=${ROOT:-}
NAME=syncpi-firstboot.txt
LOG="$ROOT/var/log/syncpi-firstboot.log"
status=0

log() {
  printf 'syncpi-firstboot: %s\n' "$*"
  mkdir -p "$ROOT/var/log" 2>/dev/null && printf '%s\n' "$*" >>"$LOG" 2>/dev/null || true
}

settings=
for d in "$ROOT/boot/firmware" "$ROOT/boot"; do
  if [ -f "$d/$NAME" ]; then
    settings="$d/$NAME"
    bootdir=$d
    break
  fi
done
if [ -z "$settings" ]; then
  log "no $NAME on the boot partition: nothing to do"
  exit 0
fi

valid_hostname() {
  case $1 in
    '' | -* | *- | *[!A-Za-z0-9-]*) return 1 ;;
  esac
  [ "${#1}" -le 63 ]
}

valid_ssh_key() {
  case $1 in
    *[[:cntrl:]]*) return 1 ;;
    'ssh-ed25519 '* | 'ssh-rsa '* | 'ecdsa-sha2-nistp256 '* | 'ecdsa-sha2-nistp384 '* | 'ecdsa-sha2-nistp521 '* | \
      'sk-ssh-ed25519@openssh.com '* | 'sk-ecdsa-sha2-nistp256@openssh.com '*) ;;
    *) return 1 ;;
  esac
  blob=${1#* }
  blob=${blob%% *}
  case $blob in
    '' | *[!A-Za-z0-9+/=]*) return 1 ;;
  esac
  [ "${#1}" -le 16384 ]
}

valid_ssid() {
  case $1 in
    '' | *[[:cntrl:]]*) return 1 ;;
  esac
  [ "${#1}" -le 32 ]
}

valid_psk() {
  case $1 in
    *[!\ -~]*) return 1 ;;
  esac
  [ "${#1}" -ge 8 ] && [ "${#1}" -le 63 ] && return 0
  case $1 in
    *[!0-9A-Fa-f]*) return 1 ;;
  esac
  [ "${#1}" -eq 64 ]
}

valid_country() {
  case $1 in
    [A-Z][A-Z]) return 0 ;;
  esac
  return 1
}

valid_user() {
  case $1 in
    '' | [!a-z_]* | *[!a-z0-9_-]*) return 1 ;;
  esac
  [ "${#1}" -le 32 ]
}

# Atomic replace: write beside the target, then rename over it.
put_file() { # path mode  (content on stdin)
  tmp="$1.syncpi-tmp.$$"
  cat >"$tmp"
  chmod "$2" "$tmp"
  mv -f "$tmp" "$1"
}

hostname_v=
country_v=
ssid_v=
psk_v=
keys_file=$(mktemp)
trap 'rm -f "$keys_file"' EXIT

cr=$(printf '\r')
n=0
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  line=${line%"$cr"}
  case $line in
    '' | '#'*) continue ;;
    *=*) ;;
    *)
      log "line $n: ignored (not key=value)"
      status=1
      continue
      ;;
  esac
  key=${line%%=*}
  val=${line#*=}
  case $key in
    hostname)
      if valid_hostname "$val"; then hostname_v=$val; else log "line $n: invalid hostname, ignored"; status=1; fi ;;
    ssh_key)
      if valid_ssh_key "$val"; then printf '%s\n' "$val" >>"$keys_file"; else log "line $n: invalid ssh_key, ignored"; status=1; fi ;;
    wifi_country)
      if valid_country "$val"; then country_v=$val; else log "line $n: invalid wifi_country, ignored"; status=1; fi ;;
    wifi_ssid)
      if valid_ssid "$val"; then ssid_v=$val; else log "line $n: invalid wifi_ssid, ignored"; status=1; fi ;;
    wifi_psk)
      if valid_psk "$val"; then psk_v=$val; else log "line $n: invalid wifi_psk, ignored"; status=1; fi ;;
    *)
      log "line $n: unknown key, ignored"
      status=1
      ;;
  esac
done <"$settings"

if [ -n "$hostname_v" ]; then
  printf '%s\n' "$hostname_v" | put_file "$ROOT/etc/hostname" 0644
  hosts="$ROOT/etc/hosts"
  {
    if [ -f "$hosts" ]; then grep -v '^127\.0\.1\.1[[:space:]]' "$hosts" || true; fi
    printf '127.0.1.1\t%s\n' "$hostname_v"
  } | put_file "$hosts" 0644
  if [ -z "$ROOT" ]; then
    printf '%s\n' "$hostname_v" >/proc/sys/kernel/hostname 2>/dev/null || hostname "$hostname_v" 2>/dev/null || true
  fi
  log "hostname set to $hostname_v"
fi

# The admin user: named by the image in /etc/syncpi/admin-user, else the first user with uid 1000.
admin_entry() {
  name=
  if [ -f "$ROOT/etc/syncpi/admin-user" ]; then
    IFS= read -r name <"$ROOT/etc/syncpi/admin-user" || true
    valid_user "$name" || name=
  fi
  awk -F: -v want="$name" '(want != "" && $1 == want) || (want == "" && $3 == 1000) { print; exit }' "$ROOT/etc/passwd"
}

if [ -s "$keys_file" ]; then
  entry=$(admin_entry || true)
  user=$(printf '%s' "$entry" | cut -d: -f1)
  uid=$(printf '%s' "$entry" | cut -d: -f3)
  gid=$(printf '%s' "$entry" | cut -d: -f4)
  home=$(printf '%s' "$entry" | cut -d: -f6)
  case $home in
    /*) bad_home= ;;
    *) bad_home=yes ;;
  esac
  case $home in *..* | *[[:cntrl:]]*) bad_home=yes ;; esac
  if [ -z "$entry" ] || ! valid_user "$user" || [ -n "$bad_home" ]; then
    log "no admin user (uid 1000 or /etc/syncpi/admin-user) with a sane home: SSH keys not installed"
    status=1
  elif [ -L "$ROOT$home/.ssh" ] || [ -L "$ROOT$home/.ssh/authorized_keys" ]; then
    log "$home/.ssh is a symbolic link: SSH keys not installed"
    status=1
  else
    mkdir -p "$ROOT$home/.ssh"
    ak="$ROOT$home/.ssh/authorized_keys"
    {
      if [ -f "$ak" ]; then cat "$ak"; fi
      while IFS= read -r k; do
        if [ ! -f "$ak" ] || ! grep -qxF -- "$k" "$ak"; then printf '%s\n' "$k"; fi
      done <"$keys_file"
    } | put_file "$ak" 0600
    chmod 0700 "$ROOT$home/.ssh"
    chown "$uid:$gid" "$ROOT$home/.ssh" "$ak"
    log "SSH keys installed for $user"
  fi
fi

if [ -n "$country_v" ]; then
  cmdline="$bootdir/cmdline.txt"
  if [ -f "$cmdline" ]; then
    # the regulatory domain must be known before the Wi-Fi driver loads: kernel command line
    sed -e 's/ *cfg80211\.ieee80211_regdom=[A-Z]*//g' -e "1s/\$/ cfg80211.ieee80211_regdom=$country_v/" "$cmdline" | put_file "$cmdline" 0755
  fi
  if [ -z "$ROOT" ] && command -v iw >/dev/null 2>&1; then iw reg set "$country_v" || true; fi
  log "Wi-Fi country set to $country_v"
fi

# Bytes of a string as "b1;b2;…;" (NetworkManager's byte-list form: no escaping needed at all).
byte_list() { printf '%s' "$1" | od -An -tu1 -v | tr -s ' \n' '  ' | sed -e 's/^ *//' -e 's/ *$//' -e 's/ /;/g' -e 's/$/;/'; }
hex_of() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }

if [ -n "$ssid_v" ] && [ -n "$psk_v" ]; then
  if [ -d "$ROOT/etc/NetworkManager" ]; then
    dir="$ROOT/etc/NetworkManager/system-connections"
    mkdir -p "$dir"
    uuid=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || true)
    # GLib key-file escapes: backslash doubled, every space as \s (a leading one would be lost)
    psk_esc=$(printf '%s\n' "$psk_v" | sed -e 's/\\/\\\\/g' -e 's/ /\\s/g')
    {
      printf '[connection]\nid=syncpi-wifi\n'
      if [ -n "$uuid" ]; then printf 'uuid=%s\n' "$uuid"; fi
      printf 'type=wifi\nautoconnect=true\n\n[wifi]\nmode=infrastructure\nssid=%s\n\n' "$(byte_list "$ssid_v")"
      printf '[wifi-security]\nkey-mgmt=wpa-psk\npsk=%s\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n' "$psk_esc"
    } | (umask 077 && put_file "$dir/syncpi-wifi.nmconnection" 0600)
    log "Wi-Fi network configured for NetworkManager"
  else
    mkdir -p "$ROOT/etc/wpa_supplicant"
    {
      printf 'ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\nupdate_config=1\n'
      if [ -n "$country_v" ]; then printf 'country=%s\n' "$country_v"; fi
      # an unquoted ssid is hex, so no SSID byte can end the string; a quoted psk is read up
      # to its last quote and has no newline (checked above); 64 hex digits are a raw key
      if [ "${#psk_v}" -eq 64 ]; then psk_line=$psk_v; else psk_line="\"$psk_v\""; fi
      printf '\nnetwork={\n\tssid=%s\n\tpsk=%s\n}\n' "$(hex_of "$ssid_v")" "$psk_line"
    } | (umask 077 && put_file "$ROOT/etc/wpa_supplicant/wpa_supplicant-wlan0.conf" 0600)
    if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then systemctl enable wpa_supplicant@wlan0.service || true; fi
    log "Wi-Fi network configured for wpa_supplicant (wlan0)"
  fi
elif [ -n "$ssid_v$psk_v" ]; then
  log "wifi_ssid and wifi_psk must both be present: Wi-Fi not configured"
  status=1
fi

# The file holds the Wi-Fi passphrase: it goes, whatever happened above (the log says what).
rm -f "$settings"
sync 2>/dev/null || true
exit "$status"
