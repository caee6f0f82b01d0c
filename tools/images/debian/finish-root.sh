#!/bin/sh
# Finishes a base root that mmdebstrap extracted (no maintainer scripts ran): the users (root and
# the unprivileged 65532 every image runs as), the CA bundle update-ca-certificates would have
# made, the loader cache and a world-writable /tmp. $1 is the root. Run by scripts/images.sh.
set -eu
r=$1
mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home/nonroot"
printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n' >"$r/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$r/etc/group"
cat "$r"/usr/share/ca-certificates/mozilla/*.crt >"$r/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$r/tmp"
chown 65532:65532 "$r/home/nonroot"
ldconfig -r "$r"
