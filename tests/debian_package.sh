#!/usr/bin/env bash
# Installs a Debian package when the program the tests need is missing; does nothing when
# it is there. One place for the apt-get steps of tests/run.sh, tests/web/run.sh,
# tests/deploy/run.sh and tests/emulated_cpu.sh.
#
#   bash tests/debian_package.sh PROGRAM PACKAGE [FALLBACK_PACKAGE...]
#
# PROGRAM is a command name or an absolute path; the packages are tried in order (the
# first that installs wins). Installing needs root: otherwise it says what to install and
# exits 1.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 PROGRAM PACKAGE [FALLBACK_PACKAGE...]" >&2
  exit 2
fi
program=$1
shift

present() {
  case "$program" in
    /*) [ -x "$program" ] ;;
    *) command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] ;;
  esac
}

if present; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$program is missing and this is not root: apt-get install $1 first" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
for package in "$@"; do
  if apt-get install -y -qq --no-install-recommends "$package" >/dev/null; then
    present && exit 0
  fi
done
echo "could not install $program (tried: $*)" >&2
exit 1
