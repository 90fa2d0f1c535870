#!/usr/bin/env bash
# build-box.sh - builds a small Debian 13 ("trixie") Vagrant box for the libvirt provider,
# straight from Debian's archive, with debootstrap. Run as root on Debian or Ubuntu.
#
#   sudo scripts/vagrant/build-box.sh --out minivpn-debian13.box
#   vagrant box add --name minivpn/debian13 minivpn-debian13.box
#
# What is in the box:
#   - Debian 13 minbase plus systemd, udev, OpenSSH, sudo, the kernel, and (unless
#     --no-packages) every package the VMs need (`scripts/packages.sh vm`, from
#     scripts/packages.txt), so provisioning needs no download from Debian at all
#   - user "vagrant" with passwordless sudo and Vagrant's well-known insecure public key
#     (Vagrant replaces it with a key of its own at the first "vagrant up")
#   - DHCP on the first network card (eth0) with systemd-networkd; Vagrant configures the rest
#   - an EMPTY /etc/machine-id: each VM makes its own at first boot. Two VMs with the same
#     machine-id send the same DHCP client id and get the same address.
#   - no SSH host key: the first boot makes one ed25519 key (an RSA key can take minutes to
#     generate on an emulated CPU)
#   - no boot loader: the disk is one ext4 file system and libvirt boots the box's own kernel
#     and initrd directly (the box's Vagrantfile says so). Kernel updates inside the VM
#     therefore do not take effect; rebuild the box instead.
#
# Options:
#   --out FILE        the box file to write (default: minivpn-debian13.box)
#   --mirror URL      Debian archive (default: the first Debian mirror in /etc/apt/sources.list*,
#                     else http://deb.debian.org/debian)
#   --suite NAME      Debian release (default: trixie)
#   --disk-size SIZE  virtual disk size, in GiB (default: 8)
#   --ssh-key FILE    public key for the vagrant user (default: Vagrant's insecure key, from
#                     the installed vagrant package)
#   --no-packages     leave out the VMs' packages (provisioning then installs them from the internet)
#   --list-packages   print the packages the box gets, one a line, and stop (no root needed)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { echo "[build-box] $*"; }
die() { echo "[build-box] error: $*" >&2; exit 1; }

OUT=minivpn-debian13.box
MIRROR=
SUITE=trixie
DISK_GB=8
SSH_KEY=
PACKAGES=1
LIST_ONLY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=${2:?--out needs a file name}; shift 2 ;;
    --mirror) MIRROR=${2:?--mirror needs a URL}; shift 2 ;;
    --suite) SUITE=${2:?--suite needs a name}; shift 2 ;;
    --disk-size) DISK_GB=${2:?--disk-size needs a number}; shift 2 ;;
    --ssh-key) SSH_KEY=${2:?--ssh-key needs a file}; shift 2 ;;
    --no-packages) PACKAGES=0; shift ;;
    --list-packages) LIST_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
# What the box is made of: what Vagrant needs, and what the VMs need (one list for the
# VMs, the host and provisioning: scripts/packages.txt).
pkgs=(systemd-sysv systemd-resolved udev dbus kmod openssh-server sudo linux-image-amd64
  iproute2 rsync ca-certificates)
if [[ $PACKAGES == 1 ]]; then
  vm_pkgs=$(bash "$HERE/../packages.sh" vm) || die "scripts/packages.sh vm failed"
  mapfile -t -O ${#pkgs[@]} pkgs <<<"$vm_pkgs"
fi
if [[ $LIST_ONLY == 1 ]]; then printf '%s\n' "${pkgs[@]}" | sort -u; exit 0; fi

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and chroot need it)"
[[ $DISK_GB =~ ^[0-9]+$ && $DISK_GB -ge 4 && $DISK_GB -le 1024 ]] || die "--disk-size: a number of GiB from 4 to 1024 (got '$DISK_GB')"
[[ $SUITE =~ ^[a-z]+$ ]] || die "--suite: a Debian release name like trixie (got '$SUITE')"
for c in debootstrap mkfs.ext4 qemu-img tar; do
  command -v "$c" >/dev/null || die "'$c' not found: apt-get install debootstrap e2fsprogs qemu-utils tar"
done

# The first Debian archive apt already uses: deb822 "URIs:" lines, then one-line "deb" lines.
detect_mirror() {
  {
    grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}'
  } | grep -E '^https?://[^ ]+/debian/?$' | head -1
}
MIRROR=${MIRROR:-$(detect_mirror || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}
# Security updates live in a separate archive next to the main one, e.g. .../debian-security.
SECURITY=${MIRROR%/debian}/debian-security

if [[ -z $SSH_KEY ]]; then
  SSH_KEY=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
    /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
  [[ -n $SSH_KEY ]] || die "Vagrant's insecure public key not found: install vagrant, or pass --ssh-key FILE"
fi
[[ -r $SSH_KEY ]] || die "--ssh-key: cannot read '$SSH_KEY'"

OUT=$(realpath -m "$OUT")
WORK=$(mktemp -d /var/tmp/minivpn-box.XXXXXX)
ROOT=$WORK/root
cleanup() {
  mountpoint -q "$ROOT/proc" 2>/dev/null && umount "$ROOT/proc"
  rm -rf "$WORK"
}
trap cleanup EXIT
start=$(date +%s)

# ---- the Debian system ----------------------------------------------------------------
say "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
  die "debootstrap failed; last lines of its log:$(echo; tail -15 "$WORK/debootstrap.log")"

in_root() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
mount -t proc proc "$ROOT/proc"
# Packages must not start their services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# No manuals, docs or translations: a smaller box, and a quicker build.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01-minivpn-box-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
{
  echo "deb $MIRROR $SUITE main"
  echo "deb $MIRROR $SUITE-updates main"
  echo "deb $SECURITY $SUITE-security main"
} >"$ROOT/etc/apt/sources.list"

say "apt-get install ${#pkgs[@]} packages (and what they depend on)"
# tshark asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | in_root debconf-set-selections
{ in_root apt-get update && in_root apt-get install -y --no-install-recommends "${pkgs[@]}"; } \
  >"$WORK/apt.log" 2>&1 || die "apt-get failed; last lines:$(echo; tail -15 "$WORK/apt.log")"
# Debian 13's Node must be new enough, or the box is of no use.
node_major=$(in_root node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[[ $PACKAGES == 0 || $node_major -ge 20 ]] || die "the box's Node.js is $node_major, need 20 or newer"

# ---- what Vagrant needs ----------------------------------------------------------------
say "configuring: user vagrant, sshd, networkd, first boot"
in_root useradd --create-home --shell /bin/bash vagrant
install -d -m 0700 -o 1000 -g 1000 "$ROOT/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$SSH_KEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
[[ $(in_root id -u vagrant) == 1000 ]] || die "user vagrant did not get uid 1000"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$ROOT/etc/sudoers.d/vagrant"
chmod 0440 "$ROOT/etc/sudoers.d/vagrant"

# SSH: one ed25519 host key, made at first boot (each VM gets its own).
rm -f "$ROOT"/etc/ssh/ssh_host_*
cat >"$ROOT/etc/ssh/sshd_config.d/10-minivpn-box.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
EOF
cat >"$ROOT/etc/systemd/system/minivpn-ssh-hostkey.service" <<'EOF'
[Unit]
Description=Make the SSH host key at first boot (ed25519 only: quick even on an emulated CPU)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
RequiredBy=ssh.service
EOF
in_root systemctl enable minivpn-ssh-hostkey.service >/dev/null 2>&1

# Network: DHCP on the first card; Vagrant writes files for the others.
cat >"$ROOT/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
EOF
in_root systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1

# ping without root: ICMP "ping sockets" for every group (iputils-ping uses them).
echo 'net.ipv4.ping_group_range = 0 2147483647' >"$ROOT/etc/sysctl.d/50-minivpn-ping.conf"

# A quick boot: where KVM is unusable the CPU is emulated, and boot work costs minutes.
# - an initramfs with only what mounts the root disk (virtio, ext4 and its checksums), not every driver
# - no drivers for the devices QEMU adds that the labs never use (floppy, graphics, beeper)
# - no daily maintenance jobs, which a new VM would all run at its first boot (dpkg
#   database backup, apt updates, fstrim, e2scrub)
say "tuning the boot: small initramfs, no unused drivers, no daily jobs at boot"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c >>"$ROOT/etc/initramfs-tools/modules"
echo 'MODULES=list' >"$ROOT/etc/initramfs-tools/conf.d/minivpn-box.conf"
printf 'blacklist %s\n' floppy pcspkr cirrus cirrus-qemu bochs qxl >"$ROOT/etc/modprobe.d/minivpn-box.conf"
in_root update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 ||
  die "update-initramfs failed; last lines:$(echo; tail -15 "$WORK/initramfs.log")"
for unit in dpkg-db-backup.timer apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer; do
  in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done

echo minivpn >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tminivpn\n' >"$ROOT/etc/hosts"
echo '/dev/vda / ext4 errors=remount-ro 0 1' >"$ROOT/etc/fstab"
# Empty, not absent: systemd makes a new machine-id at first boot.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"

# Tidy up what only the build needed.
rm -f "$ROOT/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/log/*.log
# systemd-resolved made /etc/resolv.conf a link to its stub; keep that. Otherwise no copy of ours.
[[ -L $ROOT/etc/resolv.conf ]] || : >"$ROOT/etc/resolv.conf"
# What systemd does at the first boot after /usr changed (ldconfig, hwdb, journal catalog),
# done here; then /etc/.updated and /var/.updated say so, as systemd-update-done writes them.
in_root ldconfig
in_root systemd-hwdb update
in_root journalctl --update-catalog
usr_ns=$(stat -c %.9Y "$ROOT/usr" | tr -d .)
for f in "$ROOT/etc/.updated" "$ROOT/var/.updated"; do
  printf '# This file was created by build-box.sh (as systemd-update-done would).\nTIMESTAMP_NSEC=%s\n' "$usr_ns" >"$f"
  touch -r "$ROOT/usr" "$f"
done
umount "$ROOT/proc"

# ---- the box ---------------------------------------------------------------------------
BOX=$WORK/box
mkdir "$BOX"
kernel=$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -1)
install -m 0644 "$kernel" "$BOX/vmlinuz"
install -m 0644 "$initrd" "$BOX/initrd.img"

say "making the disk: ext4 file system of ${DISK_GB} GiB, compressed qcow2"
truncate -s "${DISK_GB}G" "$WORK/disk.raw"
mkfs.ext4 -q -F -L minivpn-root -d "$ROOT" "$WORK/disk.raw"
rm -rf "$ROOT"
# Compressed: a smaller box file, and vagrant-libvirt uploads it into libvirt faster.
qemu-img convert -c -O qcow2 "$WORK/disk.raw" "$BOX/box.img"
rm -f "$WORK/disk.raw"

printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$DISK_GB" >"$BOX/metadata.json"
cat >"$BOX/Vagrantfile" <<'EOF'
# This box has no boot loader: libvirt starts the box's own kernel and initrd directly.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    here = File.dirname(__FILE__)
    lv.kernel = File.join(here, "vmlinuz")
    lv.initrd = File.join(here, "initrd.img")
    # eth0, eth1... in the order of the cards; systemd.firstboot=off: never ask questions
    # on the console at first boot (the empty machine-id makes it a first boot).
    # quiet: kernel messages on the emulated serial console slow an emulated CPU's boot.
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.firstboot=off quiet"
    # A server without a screen: no graphical console to emulate (see: virsh console).
    lv.graphics_type = "none"
  end
end
EOF

tar -C "$BOX" -cf "$OUT.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$OUT.tmp" "$OUT"
# Built with sudo: the box belongs to the user who asked for it.
[[ -n ${SUDO_UID:-} ]] && chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT"
say "done in $(($(date +%s) - start)) s: $OUT ($(du -m "$OUT" | cut -f1) MiB, Debian $SUITE, kernel $(basename "$kernel" | sed 's/^vmlinuz-//'))"
say "next: vagrant box add --name minivpn/debian13 $OUT"
