# Sourced by tests/run and tests/demo: installs the Debian packages kiln's
# tests and demo use and creates the unprivileged test user, each only when
# missing. Defines install_packages, create_test_user and install_validators.

packages=(
  nix-bin docker-registry skopeo umoci oci-image-tool runc busybox-static
  patchelf nginx bubblewrap pigz debootstrap openssl apache2-utils curl
  uidmap zstd xz-utils time python3-venv golang-1.19-go caddy
  php8.2-cli php8.2-fpm php8.2-mbstring composer tzdata
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


# The SBOM validators, from the Python package index through pip into a
# venv under the target folder (tests find it there): spdx-tools'
# `pyspdxtools` validates SPDX 2.3 JSON. Pinned, so a release of theirs
# cannot change what the tests accept.
validator_packages=(spdx-tools==0.8.5)
install_validators() {
  local venv="${CARGO_TARGET_DIR:-target}/kiln-validators"
  if [ -x "$venv/bin/pyspdxtools" ]; then
    echo "SBOM validators present in $venv"
    return
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "${validator_packages[@]}"
}
