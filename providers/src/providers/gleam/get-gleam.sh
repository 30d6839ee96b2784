#!/bin/sh
# Installs the Gleam compiler release $1 for this machine into /usr/bin.
set -e
version="$1"
machine="$(uname -m)"
archive="/tmp/gleam-$version.tar.gz"
wget -q -O "$archive" "https://github.com/gleam-lang/gleam/releases/download/v$version/gleam-v$version-$machine-unknown-linux-musl.tar.gz"
tar -xzf "$archive" -C /usr/bin
rm -f "$archive"
