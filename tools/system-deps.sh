#!/usr/bin/env bash
# System programs the test suite runs for real: Redis and PostgreSQL (service tests, started on
# loopback by the tests themselves), Chromium (the web page's tests) and the Mosquitto MQTT broker
# (the MQTT sink of `earmark listen`, also started by its tests) and the ffmpeg program (it serves
# recordings as live streams to the listener's tests). Installs the missing ones
# with apt-get (through sudo when not root); elsewhere, names them and how to go on.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || missing+=(chromium)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: redis-server, postgresql, chromium, mosquitto and ffmpeg are installed"
  exit 0
fi
echo "system-deps: installing ${missing[*]} (Debian/Ubuntu packages, about 400 MB)"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: no apt-get here; install ${missing[*]} with your package manager," >&2
  echo "  or run 'make test SYSTEM_DEPS=no' to skip the tests that need them" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "system-deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
echo "system-deps: installed ${missing[*]}"
