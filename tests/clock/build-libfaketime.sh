#!/usr/bin/env bash
# Builds libfaketime 0.9.12 into DEST (default .venv/faketime) from Debian's source tarball.
#
# Debian 12 packages libfaketime 0.9.10, which cannot fake the clock of Python 3.11: its time.sleep
# fails with EINVAL when the monotonic clock is left real, and every lock or queue with a timeout
# waits forever when it is not (0.9.10 does not intercept sem_clockwait). 0.9.12 handles both.
set -euo pipefail
DEST="${1:-.venv/faketime}"
VERSION=0.9.12
SHA256=4fc32218697c052adcdc5ee395581f2554ca56d086ac817ced2be0d6f1f8a9fa
URL="${FAKETIME_SOURCE_URL:-http://deb.debian.org/debian/pool/main/f/faketime/faketime_${VERSION}.orig.tar.gz}"

if [ -f "$DEST/libfaketime.so.1" ]; then
    exit 0
fi
for tool in curl cc make sha256sum tar; do
    command -v "$tool" >/dev/null || { echo "build-libfaketime: '$tool' is needed to build libfaketime" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-libfaketime: downloading libfaketime $VERSION from $URL"
curl --fail --silent --show-error --location --retry 3 -o "$work/src.tar.gz" "$URL"
echo "$SHA256  $work/src.tar.gz" | sha256sum --check --quiet - \
    || { echo "build-libfaketime: $URL does not have the expected SHA-256 $SHA256" >&2; exit 1; }
tar -xzf "$work/src.tar.gz" -C "$work"
make --silent -C "$work/libfaketime-$VERSION/src" libfaketime.so.1 >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; echo "build-libfaketime: the build failed (log above)" >&2; exit 1; }
mkdir -p "$DEST"
cp "$work/libfaketime-$VERSION/src/libfaketime.so.1" "$DEST/libfaketime.so.1.partial"
mv "$DEST/libfaketime.so.1.partial" "$DEST/libfaketime.so.1"
echo "build-libfaketime: built $DEST/libfaketime.so.1"
