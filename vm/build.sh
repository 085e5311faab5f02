#!/bin/sh
# vm/build.sh: build the VM's boot artefacts for kernel $KVER (default: the
# newest /boot/vmlinuz-*-amd64, Debian's linux-image-amd64) into
# $STRATA_VM_CACHE/$KVER (default /var/tmp/strata-vm): an uncompressed vmlinux
# (QEMU boots it directly through its PVH entry, skipping the firmware copy and
# the in-guest xz decompression, ~8 s under TCG) and a small initramfs
# (busybox-static, the virtio/9p modules, vm/init). Prints the cache dir.
# Rebuilt only when missing or older than vm/init or this script.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=${KVER:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1 | sed 's#.*/vmlinuz-##')}
[ -n "$KVER" ] || { echo "vm/build.sh: no /boot/vmlinuz-*-amd64 (apt-get install linux-image-amd64)" >&2; exit 1; }
M=/lib/modules/$KVER
[ -d "$M" ] || { echo "vm/build.sh: $M is missing (modules of kernel $KVER)" >&2; exit 1; }
OUT=${STRATA_VM_CACHE:-/var/tmp/strata-vm}/$KVER
mkdir -p "$OUT"
fresh() { [ -s "$1" ] && [ ! "$HERE/init" -nt "$1" ] && [ ! "$HERE/build.sh" -nt "$1" ]; }

if ! fresh "$OUT/vmlinux"; then
  # the bzImage payload is one xz stream: find its magic, decompress from there
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "/boot/vmlinuz-$KVER" | head -n 1 | cut -d: -f1)
  [ -n "$off" ] || { echo "vm/build.sh: /boot/vmlinuz-$KVER holds no xz stream" >&2; exit 1; }
  tail -c +"$((off + 1))" "/boot/vmlinuz-$KVER" | xz -dc --single-stream > "$OUT/vmlinux.tmp.$$"
  mv -f "$OUT/vmlinux.tmp.$$" "$OUT/vmlinux"
fi

if ! fresh "$OUT/initramfs.cpio.gz"; then
  T=$(mktemp -d "$OUT/.initramfs.XXXXXX")
  trap 'rm -rf "$T"' EXIT
  mkdir -p "$T/bin" "$T/mods" "$T/dev" "$T/proc" "$T/sys" "$T/host" "$T/ctl"
  cp "$(command -v busybox)" "$T/bin/busybox"
  # dependency order (plain insmod: there is no depmod data in the initramfs)
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_legacy_dev \
           drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/char/virtio_console \
           fs/netfs/netfs fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
    f=$M/kernel/$m.ko
    [ -f "$f" ] || f=$(ls "$f".* 2>/dev/null | head -n 1)   # .ko.xz on some kernels
    [ -f "$f" ] || continue                                 # built in
    cp "$f" "$T/mods/"
    basename "$f" >> "$T/mods/order"
  done
  touch "$T/mods/order"
  cp "$HERE/init" "$T/init"
  chmod 755 "$T/init" "$T/bin/busybox"
  (cd "$T" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initramfs.tmp.$$"
  mv -f "$OUT/initramfs.tmp.$$" "$OUT/initramfs.cpio.gz"
fi
echo "$OUT"
