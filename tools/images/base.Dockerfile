# A base of codex-k8s's images: the root file system scripts/images.sh made from pinned Debian
# packages (tools/images/debian/<base>.lock), as one layer. Build context: that rootfs.tar.
FROM scratch
ADD rootfs.tar /
