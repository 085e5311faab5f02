#!/bin/bash
# vm/run.sh [-s DIR]... [-e NAME]... [-t SECONDS] [-m MiB] [-l] [--] COMMAND [ARG...]
#
# Runs COMMAND as root in a throw-away QEMU VM booted from Debian's
# linux-image-amd64 (the newest /boot/vmlinuz-*-amd64, whose modules have
# device-mapper, loop, xfs, ...), with the host's root filesystem as its
# userspace (9p, read-only; tmpfs on /tmp /run /var/tmp /dev/shm) and each
# -s DIR shared writable at its own path (default: the current directory).
# The command's stdout and stderr stream back to ours and its exit code is
# ours; -e NAME passes the host's $NAME into the command's environment.
#
# Exit codes: the command's; 124 timeout (-t, default 900 s); 125 the VM
# ended without an exit code; 126 the VM's init failed; 130 interrupted.
# QEMU is ended by its pid on every way out of this script.
# KVM is not used: here /dev/kvm runs only PVM guest kernels (TCG it is).
# -l (lifeline): stdin is a pipe from the caller that it never writes; its EOF
# (the caller exited or was killed, even by SIGKILL) ends the VM as SIGTERM does.
# STRATA_VM_CACHE: where vm/build.sh keeps the boot artefacts (/var/tmp/strata-vm).
# STRATA_VM_CONSOLE=1: print the kernel console's tail at the end.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shares=() envs=() tmo=900 mem=2048 lifeline=0
while [ $# -gt 0 ]; do
  case "$1" in
    -s) shares+=("$2"); shift 2 ;;
    -e) envs+=("$2"); shift 2 ;;
    -t) tmo=$2; shift 2 ;;
    -m) mem=$2; shift 2 ;;
    -l) lifeline=1; shift ;;
    --) shift; break ;;
    -*) echo "vm/run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: vm/run.sh [-s DIR]... [-e NAME]... [-t SECONDS] [-m MiB] [-l] [--] COMMAND [ARG...]" >&2; exit 2; }
[ ${#shares[@]} -gt 0 ] || shares=("$PWD")
command -v qemu-system-x86_64 >/dev/null || { echo "vm/run.sh: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" >&2; exit 125; }
boot=$("$HERE/build.sh") || exit 125

run=$(mktemp -d "${TMPDIR:-/tmp}/strata-vm-run.XXXXXX")
qpid='' cat1='' cat2='' dog='' life=''
finish() {
  # every way out: qemu, the watchdog, the lifeline and the FIFO readers end by pid, the run dir goes
  [ -n "$life" ] && kill "$life" 2>/dev/null
  [ -n "$dog" ] && kill "$dog" 2>/dev/null
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    kill -TERM "$qpid" 2>/dev/null
    wait "$qpid" 2>/dev/null
  fi
  [ -n "$cat1" ] && kill "$cat1" 2>/dev/null
  [ -n "$cat2" ] && kill "$cat2" 2>/dev/null
  rm -rf "$run"
}
trap finish EXIT
interrupted=0
trap 'interrupted=1; [ -n "$qpid" ] && kill -TERM "$qpid" 2>/dev/null' INT TERM HUP
if [ $lifeline = 1 ]; then
  # builtins only (no child left behind when it is killed); the explicit <&3:
  # a background job's stdin is /dev/null otherwise
  exec 3<&0
  ( while IFS= read -r _; do :; done; kill -TERM $$ 2>/dev/null ) <&3 &
  life=$!
  exec 3<&-
fi

{
  echo 'set -o pipefail'
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  for v in "${envs[@]}"; do [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"; done
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$run/cmd"

virtfs=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
        -virtfs "local,path=${run//,/,,},mount_tag=ctl,security_model=none")
: > "$run/shares"
i=0
for d in "${shares[@]}"; do
  mkdir -p "$d" && d=$(cd "$d" && pwd) || exit 125
  # vm/init reads "<tag> <path>" lines (the path the rest of the line): only a newline cannot be in it
  case "$d" in *$'\n'*) echo "vm/run.sh: a shared path cannot hold a newline: $d" >&2; exit 2 ;; esac
  # QEMU's option syntax: a ',' in a value is written ',,'
  virtfs+=(-virtfs "local,path=${d//,/,,},mount_tag=rw$i,security_model=none,multidevs=remap")
  echo "rw$i $d" >> "$run/shares"
  i=$((i + 1))
done

# stdout/stderr: raw virtio serial ports -> FIFOs -> cat -> our fd 1 / fd 2 (no tty layer)
mkfifo "$run/out" "$run/err"
cat "$run/out" & cat1=$!
cat "$run/err" >&2 & cat2=$!
# acpi=off: no ACPI interpreter nor per-device IRQ-link AML (~0.25 s of TCG each);
# cryptomgr.notests: no crypto self-tests; -cpu max has RDRAND, so no virtio-rng
qemu-system-x86_64 -nodefaults -no-user-config -machine pc \
  -accel tcg,thread=multi,tb-size=512 -cpu max -m "$mem" -smp 1 \
  -display none -vga none -net none -no-reboot \
  -kernel "$boot/vmlinux" -initrd "$boot/initramfs.cpio.gz" \
  -append "console=ttyS0 loglevel=4 panic=-1 rdinit=/init tsc=reliable no_timer_check cryptomgr.notests acpi=off mitigations=off audit=0 apparmor=0" \
  -serial "file:$run/console.log" \
  -device virtio-serial-pci,id=vser \
  -chardev file,id=vout,path="$run/out" -chardev file,id=verr,path="$run/err" \
  -device virtserialport,bus=vser.0,nr=1,chardev=vout,name=stdout \
  -device virtserialport,bus=vser.0,nr=2,chardev=verr,name=stderr \
  "${virtfs[@]}" < /dev/null &
qpid=$!
( sleep "$tmo" & s=$!; trap 'kill $s 2>/dev/null; exit 0' TERM; wait $s; touch "$run/timeout"; kill -TERM "$qpid" 2>/dev/null ) &
dog=$!
while :; do wait "$qpid"; qrc=$?; kill -0 "$qpid" 2>/dev/null || break; done
qpid=''
kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null; dog=''
# qemu never opened the FIFOs (it failed early): open them so the readers see EOF
( exec 3<>"$run/out" 4<>"$run/err" ) 2>/dev/null
wait "$cat1" "$cat2" 2>/dev/null; cat1='' cat2=''
failed=0
if [ -e "$run/timeout" ]; then echo "vm/run.sh: timeout after ${tmo}s" >&2; rc=124; failed=1
elif [ -s "$run/rc" ]; then rc=$(cat "$run/rc")
elif [ $interrupted = 1 ]; then echo "vm/run.sh: interrupted" >&2; rc=130
else echo "vm/run.sh: the VM ended (qemu exit $qrc) without the command's exit code" >&2; rc=125; failed=1
fi
if [ "${STRATA_VM_CONSOLE:-0}" = 1 ] || [ $failed = 1 ] || [ "$rc" = 126 ]; then
  echo "---- vm console ----" >&2; tail -n 40 "$run/console.log" >&2
fi
exit "$rc"
