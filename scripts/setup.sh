#!/usr/bin/env bash
# `make setup`: installs and builds everything the project needs on a Debian
# host, idempotently (a second run only checks, in seconds). Every failure is
# one line saying what is missing and how to fix it, with a nonzero exit.
set -euo pipefail

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (it installs Debian packages, loads XDP programs and creates network namespaces): run 'sudo make setup'"
cd "$(dirname "$0")/.."
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
	die "needs a Debian-based system with apt-get and dpkg"

arch=$(dpkg --print-architecture)
# One list for this script and the Ansible role deploy/roles/host.
mapfile -t packages < <(sed 's/#.*//' scripts/packages.txt | tr -s ' \t' '\n' | sed '/^$/d')

missing_packages() {
	local installed
	# dpkg-query exits nonzero when it has never heard of a package: that is
	# an answer (not installed), not a failure
	installed=$({ dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "$@" 2>/dev/null || true; } |
		awk '$1 == "ii" { print $2 }' | sed 's/:.*//')
	local p
	for p in "$@"; do grep -qx "$p" <<<"$installed" || echo "$p"; done
}

apt_updated=0
apt_update() {
	if ((!apt_updated)); then
		apt-get update -qq || die "apt-get update failed: check the network and /etc/apt/sources.list"
		apt_updated=1
	fi
}
apt_install() {
	apt_update
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		die "apt-get install $* failed (see 'apt-get install $*' for details)"
}

# `setup.sh --simcluster` (make setup-simcluster): only what a simulated
# cluster adds, after a `make setup`.
if [[ ${1:-} == --simcluster ]]; then
	mapfile -t extra < <(sed 's/#.*//' scripts/packages-simcluster.txt | tr -s ' \t' '\n' | sed '/^$/d')
	mapfile -t missing < <(missing_packages "${extra[@]}")
	if ((${#missing[@]})); then
		say "installing Debian packages for a simulated cluster: ${missing[*]}"
		apt_install "${missing[@]}"
	fi
	exit 0
fi

mapfile -t missing < <(missing_packages "${packages[@]}")
if ((${#missing[@]})); then
	say "installing Debian packages: ${missing[*]}"
	apt_install "${missing[@]}"
fi

# Kernel headers for bcc. Prefer the running kernel's own package; a kernel
# without one (as on these test machines) gets Debian's generic headers
# symlinked in, which are enough for XDP programs.
kdir=/lib/modules/$(uname -r)
if [[ ! -e $kdir/build/include/generated/autoconf.h ]]; then
	apt_update
	if apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
		say "installing linux-headers-$(uname -r)"
		apt_install "linux-headers-$(uname -r)"
	else
		[[ -n $(missing_packages "linux-headers-$arch") ]] && apt_install "linux-headers-$arch"
		hdr=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
		[[ -n $hdr ]] || die "no kernel headers found under /usr/src after installing linux-headers-$arch"
		common=${hdr%-"$arch"}-common
		[[ -d $common ]] || die "found $hdr but not $common"
		mkdir -p "$kdir"
		ln -sfn "$hdr" "$kdir/build"
		ln -sfn "$common" "$kdir/source"
		say "no headers package for kernel $(uname -r): linked $kdir/build -> $hdr (Debian's generic headers; fine for XDP programs)"
	fi
fi

if ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf: the kernel needs CONFIG_BPF_SYSCALL"
	say "mounted bpffs on /sys/fs/bpf"
fi

# The venv is made from Debian's Python so it sees Debian's bcc.
if [[ ! -x .venv/bin/python ]]; then
	say "creating .venv from /usr/bin/python3 (with system site packages, for bcc)"
	/usr/bin/python3 -m venv --system-site-packages .venv || die "cannot create .venv: is python3-venv installed?"
fi
stamp=$(cat pyproject.toml harness/native/* engine/dint_proto.h engine/dint_compat.h | sha256sum | cut -c1-16)
if [[ $(cat .venv/.dint-stamp 2>/dev/null) != "$stamp" ]]; then
	# DINT_WHEELS: a directory of wheels to install from instead of a
	# package index (what `harness deploy setup` gives a cluster host)
	if [[ -n ${DINT_WHEELS:-} ]]; then
		say "installing the project and its pinned Python dependencies into .venv (from $DINT_WHEELS)"
		.venv/bin/pip install -q --disable-pip-version-check --no-index --find-links "$DINT_WHEELS" -e . ||
			die "pip install into .venv from $DINT_WHEELS failed (see the output above)"
	else
		say "installing the project and its pinned Python dependencies into .venv"
		.venv/bin/pip install -q --disable-pip-version-check -e . ||
			die "pip install into .venv failed (PyPI must be reachable; see the output above)"
	fi
	echo "$stamp" >.venv/.dint-stamp
fi
.venv/bin/python -c 'import bcc' 2>/dev/null ||
	die "Python cannot import bcc: install Debian's python3-bpfcc and recreate .venv ('make distclean setup')"

make -s build || die "building the XDP objects and baseline servers failed (see the compiler output above)"

# Root, the BPF syscall and native XDP on veth, checked for real.
.venv/bin/python -m harness preflight || exit 1
say "ready"
