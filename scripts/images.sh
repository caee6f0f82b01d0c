#!/usr/bin/env bash
# Builds the image of every deployable — api-gateway, control-plane, worker, agent-runner (with git
# and the pinned Codex CLI), forge-sim and model-sim — without a Docker engine, as OCI archives in
# $CODEXK8S_IMAGES_DIR (default ~/.cache/codex-k8s/images), and prints each one's size and digest.
#
#   scripts/images.sh [--release] [--lock] [--no-build] [NAME...]
#
# Each image is built by buildah from the Dockerfile next to its service (the recipe a production
# builder uses too), FROM one of two bases made here from pinned Debian packages by mmdebstrap
# (tools/images/debian/*.lock; `--lock` re-resolves them against the archive and rewrites the
# locks): `runtime` (libc, CA certificates; the services) and `git` (a shell, coreutils and git;
# agent-runner and forge-sim). Builds are reproducible: the same inputs give the same digests.
# Every image runs as uid 65532. The binaries are the workspace's (`cargo build --bins`, debug
# unless --release; `--no-build` takes them as they are, as the test command does after
# `cargo test --no-run`), stripped. An image whose inputs did not change is not built again.
# buildah and mmdebstrap come from apt when missing (root). See docs/adr/0019-images.md.
set -euo pipefail
# The bases are made in command substitutions: a failure there must end the script too.
shopt -s inherit_errexit
# Package lists are sorted and compared byte-wise, whatever the caller's locale.
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
say() { echo "images: $*" >&2; }
die() { echo "images: $*" >&2; exit 1; }

profile=debug; cargo_profile=(); lock=0; build=1; names=()
for a in "$@"; do
  case "$a" in
    --release) profile=release; cargo_profile=(--release) ;;
    --lock) lock=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $a (see --help)" ;;
    *) names+=("$a") ;;
  esac
done

# name → the service directory holding its Dockerfile, and its base.
declare -A DIR=(
  [api-gateway]=services/external/api-gateway [control-plane]=services/internal/control-plane
  [worker]=services/jobs/worker [agent-runner]=services/jobs/agent-runner
  [forge-sim]=services/dev/forge-sim [model-sim]=services/dev/model-sim
)
declare -A BASE=(
  [api-gateway]=runtime [control-plane]=runtime [worker]=runtime [model-sim]=runtime
  [agent-runner]=git [forge-sim]=git
)
all=(api-gateway control-plane worker agent-runner forge-sim model-sim)
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for n in "${names[@]}"; do [ -n "${DIR[$n]:-}" ] || die "no image named $n (one of: ${all[*]})"; done

out="${CODEXK8S_IMAGES_DIR:-$HOME/.cache/codex-k8s/images}"
mkdir -p "$out"
# buildah keeps its own storage under the cache (vfs: no overlay mounts, nothing outside it).
store="$out/.buildah"
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || die "no workspace version in Cargo.toml"
# Everything in the images is dated here, so a rebuild gives the same bytes.
export SOURCE_DATE_EPOCH=1700000000

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "install ${missing[*]} (Debian: apt-get install ${missing[*]}) and run again"
  say "installing ${missing[*]} from apt (once)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2 \
    || die "apt-get install ${missing[*]} failed (output above)"
fi

# The two bases: the packages asked for, and the lock holding the whole resolved set, pinned.
declare -A WANT=(
  [runtime]="libc6 libgcc-s1 base-files netbase ca-certificates"
  [git]="libc6 libc-bin libgcc-s1 base-files netbase ca-certificates git bash dash coreutils grep sed findutils diffutils gzip tar curl"
)
mirror=http://deb.debian.org/debian
hook="$root/tools/images/debian/finish-root.sh"

# What a base is made from: its lock, the script finishing its root, this script (the packages
# asked for, mmdebstrap's options) and the Dockerfile turning the root into an image.
base_key() {
  cat "$root/tools/images/debian/$1.lock" "$hook" "$root/scripts/images.sh" "$root/tools/images/base.Dockerfile" 2>/dev/null \
    | sha256sum | cut -c1-16
}

# Makes (or takes from the cache) the root file system of base $1; prints the tarball's path.
base_root() {
  local b=$1 lockf="$root/tools/images/debian/$1.lock" key tarball work includes relock=0
  # --lock re-resolves each base once per invocation.
  if { [ "$lock" = 1 ] && [ ! -e "$out/.bases/relocked-$b-$$" ]; } || [ ! -f "$lockf" ]; then
    relock=1
    includes=$(echo "${WANT[$b]}" | tr ' ' ',')
  else
    includes=$(grep -v '^#' "$lockf" | paste -sd, -)
  fi
  key=$(base_key "$b")
  tarball="$out/.bases/$b-$key.tar"
  if [ "$relock" = 0 ] && [ -f "$tarball" ]; then echo "$tarball"; return; fi
  mkdir -p "$out/.bases"
  work=$(mktemp -d)
  say "base $b: resolving and extracting Debian bookworm packages with mmdebstrap (about 20 s)"
  # Only the listed packages and their dependencies, extracted (no maintainer scripts, no dpkg
  # database, no apt); docs, manuals, translations and perl's full library left out.
  mmdebstrap --variant=extract --include="$includes" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/perl/*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/perl/*' --dpkgopt='path-exclude=/usr/share/perl5/*' \
    --extract-hook="ls \"\$1/var/cache/apt/archives\" > '$work/debs'" \
    --extract-hook="sh '$hook' \"\$1\"" \
    bookworm "$work/root.tar" "$mirror" >"$work/log" 2>&1 \
    || { cat "$work/log" >&2; rm -rf "$work"; die "mmdebstrap could not make base $b (log above; a pinned version the archive no longer has: run with --lock)"; }
  # The resolved set, as pkg=version, from the names of the archives apt fetched.
  sed -n 's/^\([^_]*\)_\([^_]*\)_[^_]*\.deb$/\1=\2/p' "$work/debs" | sed 's/%3a/:/g' | sort >"$work/resolved"
  if [ "$relock" = 1 ]; then
    touch "$out/.bases/relocked-$b-$$"
    { echo "# base $b: ${WANT[$b]} and their dependencies (Debian bookworm), pinned; scripts/images.sh --lock refreshes"; cat "$work/resolved"; } >"$lockf"
    key=$(base_key "$b")
    tarball="$out/.bases/$b-$key.tar"
    say "base $b: wrote $(wc -l <"$work/resolved") pinned packages to ${lockf#"$root"/}"
  elif ! diff <(grep -v '^#' "$lockf") "$work/resolved" >"$work/diff"; then
    cat "$work/diff" >&2
    rm -rf "$work"
    die "base $b: the archive resolved other packages than ${lockf#"$root"/} pins (above); run scripts/images.sh --lock and commit the lock"
  fi
  rm -f "$out/.bases/$b-"*.tar
  mv "$work/root.tar" "$tarball"
  rm -rf "$work"
  echo "$tarball"
}

# Builds base $1 into buildah's storage as localhost/codex-k8s/base-$1:<key>; prints the name.
base_image() {
  local tarball tag ctx
  tarball=$(base_root "$1")
  tag="localhost/codex-k8s/base-$1:$(basename "$tarball" .tar | sed "s/^$1-//")"
  if ! bh inspect --type image "$tag" >/dev/null 2>&1; then
    ctx=$(mktemp -d)
    ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
    bh bud --quiet --timestamp "$SOURCE_DATE_EPOCH" --identity-label=false --omit-history --format oci \
      -f "$root/tools/images/base.Dockerfile" -t "$tag" "$ctx" >/dev/null || { rm -rf "$ctx"; die "buildah could not build $tag"; }
    rm -rf "$ctx"
  fi
  echo "$tag"
}

bins="${CARGO_TARGET_DIR:-target}/$profile"
if [ "$build" = 1 ]; then
  say "building the binaries (cargo build --bins, $profile)"
  cargo build --bins --locked --quiet "${cargo_profile[@]}"
fi
for n in "${names[@]}"; do [ -x "$bins/$n" ] || die "no binary $bins/$n (cargo build --bins${cargo_profile:+ --release})"; done

for n in "${names[@]}"; do
  dir="${DIR[$n]}"
  base=$(base_image "${BASE[$n]}")
  ctx="$out/.context/$n"
  rm -rf "$ctx"; mkdir -p "$ctx/bin"
  strip -o "$ctx/bin/$n" "$bins/$n"
  if [ "$n" = agent-runner ]; then
    # The Codex CLI's native binary and its ripgrep, from the npm package pinned in tools/codex.
    codex=$(scripts/codex.sh)
    vendor=$(dirname "$(readlink -f "$codex")")/../../codex-linux-x64/vendor/x86_64-unknown-linux-musl
    [ -x "$vendor/bin/codex" ] || die "no native Codex binary under $vendor (scripts/codex.sh installs it)"
    mkdir -p "$ctx/codex"
    cp "$vendor/bin/codex" "$vendor/codex-path/rg" "$ctx/codex/"
  fi
  key=$( (cat "$dir/Dockerfile"; echo "$base"; cd "$ctx" && find . -type f | sort | xargs sha256sum) | sha256sum | cut -c1-16)
  tag="localhost/codex-k8s/$n:$version"
  archive="$out/$n.tar"
  if [ -f "$archive" ] && [ "$(cat "$out/$n.key" 2>/dev/null)" = "$key" ]; then
    say "$n: unchanged"
  else
    say "$n: building from ${dir}/Dockerfile FROM $base"
    bh bud --quiet --timestamp "$SOURCE_DATE_EPOCH" --identity-label=false --omit-history --format oci --pull=never \
      --build-arg "BASE=$base" -f "$dir/Dockerfile" -t "$tag" "$ctx" >/dev/null || die "buildah could not build $n (output above)"
    # Written under a temporary name and moved in whole; the key says the archive is complete.
    rm -f "$out/$n.key" "$archive.tmp"
    bh push --quiet --digestfile "$out/$n.digest" "$tag" "oci-archive:$archive.tmp:$version" || die "buildah could not write $archive"
    mv "$archive.tmp" "$archive"
    user=$(bh inspect --type image --format '{{.OCIv1.Config.User}}' "$tag")
    [ "$user" = "65532:65532" ] || die "$n runs as '$user', not 65532:65532 (its Dockerfile's USER)"
    echo "$key" >"$out/$n.key"
    # The archive is the product; buildah's copy (vfs: whole layers) is not kept.
    bh rmi "$tag" >/dev/null 2>&1 || true
  fi
  # Which binary the image holds (before stripping): the tests refuse an image of another build.
  sha256sum "$bins/$n" | cut -d' ' -f1 >"$out/$n.binary"
  printf 'image %-14s %-40s %7s MB  %s\n' "$n" "$tag" "$(( $(stat -c %s "$archive") / 1000000 ))" "$(cat "$out/$n.digest")"
done
rm -rf "$out/.context" "$out"/.bases/relocked-*-$$
