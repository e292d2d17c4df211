#!/usr/bin/env bash
# Install the real Puppet stack the orch-puppet integration tests run against:
# puppet-agent, facter and puppetserver from Debian's own packages, and PuppetDB
# (puppetdb, puppet-terminus-puppetdb) for the PuppetDB discovery test.
#
# Idempotent: does nothing (exit 0) when the packages are already installed and
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
# * puppetdb's maintainer scripts would use dbconfig-common to create a "puppetdb" role and
#   database on the local PostgreSQL: that is preseeded off (the tests create and drop a
#   database of their own), and the Debian service (ports 8080/8081) is never started.
#   PuppetDB failing to install is reported but is not an error: only its test skips.
#
# Exit status: 0 installed (or already there), 1 failed (the reason on stderr), 3 not a
# Debian-like system with apt-get (the tests then skip with that reason).
set -uo pipefail

PKGS=(puppet-agent facter puppetserver)
PDB_PKGS=(puppetdb puppet-terminus-puppetdb)
LOG=${ORCH_PUPPET_INSTALL_LOG:-/tmp/orch-puppet-install.log}

log() { printf 'install-puppet: %s\n' "$*" >&2; }

installed() {  # installed PACKAGE...
    local status
    status=$(dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null) || return 1
    [ "$(grep -c 'install ok installed' <<<"$status")" -eq "$#" ]
}

apt_install() {  # apt_install PACKAGE...: waits for another apt/dpkg to let go of the lock
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y \
        -o DPkg::Lock::Timeout=300 "$@" >>"$LOG" 2>&1
}

install_puppetdb() {
    installed "${PDB_PKGS[@]}" && return 0
    echo "puppetdb puppetdb/dbconfig-install boolean false" | debconf-set-selections \
        || { log "cannot preseed puppetdb/dbconfig-install; not installing PuppetDB"; return 0; }
    log "installing ${PDB_PKGS[*]} (log: $LOG)"
    if ! apt_install "${PDB_PKGS[@]}" || ! installed "${PDB_PKGS[@]}"; then
        log "apt-get install ${PDB_PKGS[*]} failed (the PuppetDB test will skip); last lines of $LOG:"
        tail -5 "$LOG" >&2
    fi
    return 0
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

if installed "${PKGS[@]}" && installed "${PDB_PKGS[@]}"; then
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

if installed "${PKGS[@]}"; then
    write_facter_conf || { log "cannot write /etc/facter/facter.conf"; exit 1; }
    timeout 600 apt-get update >"$LOG" 2>&1 || log "apt-get update failed (see $LOG)"
    install_puppetdb
    exit 0
fi

log "installing ${PKGS[*]} (log: $LOG)"
started=$(date +%s)
if ! timeout 600 apt-get update >"$LOG" 2>&1; then
    log "apt-get update failed; last lines of $LOG:"; tail -5 "$LOG" >&2; exit 1
fi
if ! apt_install "${PKGS[@]}"; then
    log "apt-get install failed; last lines of $LOG:"; tail -5 "$LOG" >&2; exit 1
fi
installed "${PKGS[@]}" || { log "packages still not installed after apt-get install"; exit 1; }
write_facter_conf || { log "cannot write /etc/facter/facter.conf"; exit 1; }
install_puppetdb
log "installed in $(( $(date +%s) - started )) s: puppet $(puppet --version 2>/dev/null), facter $(facter --version 2>/dev/null)"
