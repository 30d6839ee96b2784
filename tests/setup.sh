# Sourced by tests/run and tests/demo: installs the Debian packages kiln's
# tests and demo use and creates the unprivileged test user, each only when
# missing. Defines install_packages, create_test_user and install_validators.

packages=(
  nix-bin docker-registry skopeo umoci oci-image-tool runc busybox-static
  patchelf nginx bubblewrap pigz debootstrap openssl apache2-utils curl
  uidmap zstd xz-utils time python3-venv golang-1.19-go caddy
  php8.2-cli php8.2-fpm php8.2-mbstring composer tzdata ruby rustc cargo
  gcc-12 binutils libc6-dev openjdk-17-jdk-headless maven libsurefire-java
  libmaven-clean-plugin-java libmaven-compiler-plugin-java
  libmaven-dependency-plugin-java libmaven-install-plugin-java
  libmaven-jar-plugin-java libmaven-resources-plugin-java
)
test_user=kiln-test

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "kiln test setup: $1 needs root; run tests/run or tests/demo as root (they install packages and create the test user)" >&2
    exit 1
  fi
}

install_packages() {
  local missing=()
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all ${#packages[@]} packages present"
    return
  fi
  need_root "installing ${missing[*]}"
  echo "installing: ${missing[*]}"
  # Packages such as nginx must not start system services here: tests start
  # their own on loopback ports.
  local policy=/usr/sbin/policy-rc.d
  local had_policy=0
  [ -e "$policy" ] && had_policy=1
  [ $had_policy = 1 ] || printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ $had_policy = 1 ] || rm -f "$policy"
}

create_test_user() {
  if id "$test_user" >/dev/null 2>&1; then
    echo "user $test_user present"
  else
    need_root "creating the test user"
    useradd --create-home --shell /bin/bash "$test_user"
  fi
  # Rootless builds map extra uids and gids from these ranges.
  for file in /etc/subuid /etc/subgid; do
    grep -q "^$test_user:" "$file" 2>/dev/null || {
      need_root "adding $test_user to $file"
      echo "$test_user:200000:65536" >> "$file"
    }
  done
}


# The validators, from the Python package index through pip into a venv
# under the target folder (tests find it there): spdx-tools' `pyspdxtools`
# validates SPDX 2.3 JSON, cyclonedx-python-lib's JSON schema validation
# (its json-validation extra) CycloneDX 1.5, and PyNaCl writes an encrypted
# cosign key the way cosign does. Pinned, so a release of theirs cannot
# change what the tests accept; the venv records the pins it holds, so a
# changed list is installed again.
validator_packages=(spdx-tools==0.8.5 "cyclonedx-python-lib[json-validation]==11.12.0" pynacl==1.6.2)
install_validators() {
  local venv="${CARGO_TARGET_DIR:-target}/kiln-validators"
  if [ "$(cat "$venv/kiln-pins" 2>/dev/null)" = "${validator_packages[*]}" ]; then
    echo "validators present in $venv"
  else
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "${validator_packages[@]}"
    echo "${validator_packages[*]}" > "$venv/kiln-pins"
  fi
  install_sigstore_skopeo
}

# A skopeo that verifies cosign signatures. Debian 12's skopeo 1.9.3 has
# sigstore verification patched out ("Debian-local change: sigstore
# disabled"); Debian 13 (trixie) ships skopeo 1.18 without that patch but
# built against glibc 2.38. So its .deb and the trixie libraries it loads
# are unpacked under the target folder (never over the system's skopeo)
# and run through trixie's own dynamic loader by a wrapper script. apt
# reads a temporary sources list naming this machine's Debian mirror with
# the trixie suite; the machine's apt configuration is not touched.
sigstore_skopeo_version=1.18.0+ds1-1+b5
sigstore_skopeo_libraries=(libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)
install_sigstore_skopeo() {
  local dir
  dir="$(realpath -m "${CARGO_TARGET_DIR:-target}/kiln-skopeo")"
  if [ -x "$dir/skopeo" ]; then
    echo "sigstore skopeo present in $dir"
    return
  fi
  local mirror
  mirror="$(grep -rhoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^[:space:]]+' | head -1)" ||
    true # grep fails on whichever of the two is missing; a found mirror is enough
  if [ -z "$mirror" ]; then
    echo "kiln test setup: no Debian mirror in /etc/apt/sources.list*; cannot fetch trixie's skopeo" >&2
    return 1
  fi
  local work
  work="$(mktemp -d)"
  mkdir -p "$work"/{lists/partial,cache/archives/partial,parts,debs}
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$work/sources.list"
  local apt=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=$work/parts"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User="$(id -un)")
  apt-get "${apt[@]}" update -qq
  (cd "$work/debs" && apt-get "${apt[@]}" download -qq "skopeo=$sigstore_skopeo_version" "${sigstore_skopeo_libraries[@]}")
  rm -rf "$dir.partial"
  mkdir -p "$dir.partial/root"
  local deb
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$dir.partial/root"; done
  rm -rf "$work"
  if grep -qa 'Debian-local change: sigstore disabled' "$dir.partial/root/usr/bin/skopeo"; then
    echo "kiln test setup: skopeo $sigstore_skopeo_version still has sigstore disabled" >&2
    return 1
  fi
  cat > "$dir.partial/skopeo" <<'WRAPPER'
#!/bin/sh
root="$(dirname "$(realpath "$0")")/root"
exec "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$root/usr/lib/x86_64-linux-gnu" "$root/usr/bin/skopeo" "$@"
WRAPPER
  chmod +x "$dir.partial/skopeo"
  "$dir.partial/skopeo" --version
  mv "$dir.partial" "$dir"
}
