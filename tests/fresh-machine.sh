#!/usr/bin/env bash
# Runs the README's test command as a fresh machine would: tshark, scapy, ethtool, podman and
# cargo-fuzz absent (whited out by overlay mounts in a private mount namespace, so nothing on the
# machine changes), no installing, CI unset. The run must pass, and its summary must name the
# checks it could not run. Needs root; .ci/run runs it after the full run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "tests/fresh-machine.sh: needs root (mount namespaces)" >&2
  exit 1
fi

scratch=$(mktemp -d)
log=$(mktemp)
cleanup() {
  umount "$scratch" 2>/dev/null || true
  rmdir "$scratch" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
mount -t tmpfs fresh-machine "$scratch"

# One overlay per directory that holds something to hide, with a whiteout (a 0:0 character
# device) in its upper layer for each hidden entry.
declare -A hide=()
add() {
  local path=$1
  [ -e "$path" ] || return 0
  local dir name
  dir=$(dirname "$path")
  name=$(basename "$path")
  case " ${hide[$dir]:-} " in *" $name "*) return 0 ;; esac
  hide[$dir]+=" $name"
}
for tool in tshark ethtool cargo-fuzz podman; do
  if p=$(command -v "$tool"); then add "$(readlink -f "$p")"; add "$p"; fi
done
add /usr/lib/python3/dist-packages/scapy

mounts=""
n=0
for dir in "${!hide[@]}"; do
  n=$((n + 1))
  mkdir -p "$scratch/$n/up" "$scratch/$n/work"
  for entry in ${hide[$dir]}; do
    [ -e "$scratch/$n/up/$entry" ] || mknod "$scratch/$n/up/$entry" c 0 0
  done
  mounts+="mount -t overlay fresh-machine -o lowerdir=$dir,upperdir=$scratch/$n/up,workdir=$scratch/$n/work $dir && "
done

echo "== tests/fresh-machine.sh: tests/run.sh without:${hide[*]} =="
rc=0
env -u CI GATEWAY_NO_INSTALL=1 unshare --mount --propagation private bash -c "
  set -e
  $mounts true
  for t in tshark ethtool cargo-fuzz podman; do
    if command -v \$t >/dev/null; then echo \"still there: \$t\"; exit 1; fi
  done
  if /usr/bin/python3 -c 'import scapy' 2>/dev/null; then echo 'still there: scapy'; exit 1; fi
  bash tests/run.sh
" >"$log" 2>&1 || rc=$?

summary=$(sed -n '/^== tests\/run.sh: /,$p' "$log")
if [ "$rc" -ne 0 ]; then
  tail -60 "$log"
  echo "tests/fresh-machine.sh: tests/run.sh failed (exit $rc) on the fresh machine"
  exit 1
fi
echo "$summary"
fail=0
grep -q "checks NOT run" <<<"$summary" || { echo "no summary of skipped checks"; fail=1; }
for what in tshark scapy cargo-fuzz podman; do
  grep -q "skipped: .*$what" <<<"$summary" || { echo "the summary does not list $what"; fail=1; }
done
# Nothing that could not run may have printed a bare `ok` without a line in the summary: every
# test that printed `skipped:` must be in it.
while read -r what; do
  grep -qF -- "$what" <<<"$summary" || { echo "skipped but not summarised: $what"; fail=1; }
done < <(grep -E '^skipped: ' "$log" | sed 's/^skipped: //' | sort -u)
if [ "$fail" -ne 0 ]; then
  echo "tests/fresh-machine.sh: FAILED"
  exit 1
fi
echo "== tests/fresh-machine.sh: passed, and said what it did not run =="
