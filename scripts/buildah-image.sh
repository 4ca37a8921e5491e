#!/usr/bin/env bash
# Builds backend/Dockerfile with buildah where no Docker engine runs (these
# machines), unchanged: base images cannot be pulled here, so they are made
# locally under the exact names the Dockerfile uses:
#   debian:bookworm-slim      debootstrap --variant=minbase bookworm (the Debian mirror answers)
#   rust:1.95-slim-bookworm   that, plus this machine's own Rust 1.95 toolchain
# This machine's extra CA certificates (/usr/local/share/ca-certificates: its
# egress proxy inspects TLS) go into the synthesised debian image, so cargo,
# apt and pip inside the build trust the proxy while the Dockerfile stays
# standard. Then `buildah bud` (vfs storage, chroot isolation) builds the image, and
# the script checks what is inside: its size, no shell, no compiler, the
# binary's version.
#   scripts/buildah-image.sh [VERSION] [REVISION]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' backend/Cargo.toml | head -1)}
revision=${2:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
# overlay where the kernel allows it (as root here); vfs copies every layer
# in full and needs tens of GB for this build.
driver=${BUILDAH_STORAGE_DRIVER:-overlay}
bah() { buildah --storage-driver "$driver" "$@"; }
work=${BUILDAH_WORK:-$HOME/.cache/ducklake-backend/buildah}
mkdir -p "$work"
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || sudo_if env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool"
done

has_image() { bah images --quiet "$1" >/dev/null 2>&1; }

if ! has_image docker.io/library/debian:bookworm-slim; then
  echo "==> debian:bookworm-slim from debootstrap"
  rootfs="$work/bookworm"
  if [ ! -x "$rootfs/bin/sh" ]; then
    rm -rf "$rootfs"
    sudo_if debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian
    sudo_if chroot "$rootfs" apt-get clean
    sudo_if rm -rf "$rootfs"/var/lib/apt/lists/*
  fi
  ctr=$(bah from scratch)
  mnt=$(bah mount "$ctr")
  sudo_if cp -a "$rootfs"/. "$mnt"/
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$mnt/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
  fi
  bah umount "$ctr"
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  bah run --isolation chroot "$ctr" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null && update-ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*' 
  bah commit --rm "$ctr" docker.io/library/debian:bookworm-slim
fi

if ! has_image docker.io/library/rust:1.95-slim-bookworm; then
  echo "==> rust:1.95-slim-bookworm from debian:bookworm-slim + this machine's toolchain"
  toolchain=$(rustc --print sysroot)
  case "$(rustc --version)" in "rustc 1.95."*) ;; *) echo "need Rust 1.95 on this machine" >&2; exit 1 ;; esac
  ctr=$(bah from docker.io/library/debian:bookworm-slim)
  mnt=$(bah mount "$ctr")
  mkdir -p "$mnt/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu" "$mnt/usr/local/cargo/bin"
  cp -a "$toolchain"/. "$mnt/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/"
  for bin in cargo rustc rustdoc; do
    ln -sf "/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/$bin" "$mnt/usr/local/cargo/bin/$bin"
  done
  bah umount "$ctr"
  bah run --isolation chroot "$ctr" -- sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
  bah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bah commit --rm "$ctr" docker.io/library/rust:1.95-slim-bookworm
fi

echo "==> buildah bud ducklake-backend:$version"
bah bud --isolation chroot --layers -f backend/Dockerfile \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  -t "ducklake-backend:$version" .

echo "==> what is inside"
ctr=$(bah from "ducklake-backend:$version")
mnt=$(bah mount "$ctr")
size=$(du -sb "$mnt" | cut -f1)
for unwanted in bin/sh bin/bash usr/bin/gcc usr/bin/cc usr/bin/apt usr/bin/python3; do
  if [ -e "$mnt/$unwanted" ]; then echo "the image contains /$unwanted" >&2; exit 1; fi
done
bah umount "$ctr"
bah run --isolation chroot --user 1000:1000 "$ctr" -- /usr/local/bin/ducklake-backend --version
bah rm "$ctr" >/dev/null
printf 'image ducklake-backend:%s: %s MB unpacked; no shell, no compiler, no package manager\n' \
  "$version" "$((size / 1000000))"
