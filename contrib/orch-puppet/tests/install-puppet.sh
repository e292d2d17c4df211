#!/usr/bin/env bash
# Install the real Puppet stack the orch-puppet integration tests run against:
# puppet-agent, facter and puppetserver from Debian's own packages.
#
# Idempotent: does nothing (exit 0) when the three packages are already installed and
# /etc/facter/facter.conf exists. Safe to call from the project's test command.
#
# * The packages' maintainer scripts would start the puppet agent daemon (server "puppet")
#   and puppetserver (binding 0.0.0.0). A policy-rc.d that forbids service starts is put in
#   place for the install if there is none (and removed afterwards).
# * facter 4.3 cannot read PID 1's environ in some sandboxes/containers: its container
#   resolver then logs 18 errors and exits 1. /etc/facter/facter.conf (the path facter and
#   puppet really read on Debian) blocks the facts that need it, and the cloud-metadata
#   facts that would otherwise make HTTP calls to 169.254.169.254 on kvm/xen guests.
#   An existing facter.conf is never replaced.
#
# Exit status: 0 installed (or already there), 1 failed (the reason on stderr), 3 not a
# Debian-like system with apt-get (the tests then skip with that reason).
set -uo pipefail

PKGS=(puppet-agent facter puppetserver)
LOG=${ORCH_PUPPET_INSTALL_LOG:-/tmp/orch-puppet-install.log}

log() { printf 'install-puppet: %s\n' "$*" >&2; }

installed() {
    local status
    status=$(dpkg-query -W -f='${Status}\n' "${PKGS[@]}" 2>/dev/null) || return 1
    [ "$(grep -c 'install ok installed' <<<"$status")" -eq "${#PKGS[@]}" ]
}

write_facter_conf() {
    [ -e /etc/facter/facter.conf ] && return 0
    mkdir -p /etc/facter || return 1
    cat > /etc/facter/facter.conf <<'CONF'
# Written by orch-puppet's tests/install-puppet.sh: keep facter quiet and on loopback.
facts : {
  blocklist : [ "virtual", "is_virtual", "hypervisors", "system_uptime",
                "ec2_metadata", "ec2_userdata", "az_metadata", "gce", "cloud" ]
}
CONF
    log "wrote /etc/facter/facter.conf (blocklist for sandboxed /proc and cloud metadata)"
}

if installed; then
    write_facter_conf || { log "cannot write /etc/facter/facter.conf"; exit 1; }
    exit 0
fi

command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1 || {
    log "not a Debian-like system (no apt-get): install ${PKGS[*]} yourself"; exit 3; }
[ "$(id -u)" = 0 ] || { log "must run as root to install ${PKGS[*]}"; exit 1; }

TMP_POLICY=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
        && TMP_POLICY=1
fi
cleanup() { [ "$TMP_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

log "installing ${PKGS[*]} (log: $LOG)"
started=$(date +%s)
if ! timeout 600 apt-get update >"$LOG" 2>&1; then
    log "apt-get update failed; last lines of $LOG:"; tail -5 "$LOG" >&2; exit 1
fi
if ! DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y "${PKGS[@]}" >>"$LOG" 2>&1; then
    log "apt-get install failed; last lines of $LOG:"; tail -5 "$LOG" >&2; exit 1
fi
installed || { log "packages still not installed after apt-get install"; exit 1; }
write_facter_conf || { log "cannot write /etc/facter/facter.conf"; exit 1; }
log "installed in $(( $(date +%s) - started )) s: puppet $(puppet --version 2>/dev/null), facter $(facter --version 2>/dev/null)"
