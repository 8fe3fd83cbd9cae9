#!/usr/bin/env bash
# Validate docker-compose.yml with a real Compose parser; exit non-zero on a bad file.
#
#   bash scripts/validate-compose.sh [path/to/docker-compose.yml]
#
# Parser: `docker compose` (v2 plugin) when the machine has it, else Debian's `docker-compose`
# (1.29, installed here when missing). 1.29 understands what this file relies on: no top-level
# `version:`, `x-` extension fields with YAML anchors/merge keys, `profiles`, `deploy.replicas`
# and the depends_on conditions service_healthy / service_completed_successfully. Neither needs
# a Docker daemon for `config`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
file="${1:-$root/docker-compose.yml}"
[ -f "$file" ] || { echo "validate-compose: no such file: $file" >&2; exit 2; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    echo "validate-compose: installing Debian's docker-compose" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing or stale on a fresh machine: update once and retry.
    if ! apt-get install -y -qq docker-compose >"$log" 2>&1; then
      if ! { apt-get update -qq && apt-get install -y -qq docker-compose; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "validate-compose: could not install docker-compose" >&2
        exit 2
      fi
    fi
  fi
  compose=(docker-compose)
fi

# The file follows the Compose specification: a top-level `version:` is obsolete there, and
# the v1 parser would silently accept one, so refuse it here.
if grep -qE '^version[[:space:]]*:' "$file"; then
  echo "validate-compose: $file has a top-level 'version:' key (Compose spec files have none)" >&2
  exit 1
fi

# Parse, interpolate and schema-check every service, including those behind profiles.
if ! "${compose[@]}" -f "$file" --project-directory "$(dirname "$file")" config -q; then
  echo "validate-compose: $file is not a valid Compose file (${compose[*]})" >&2
  exit 1
fi
echo "validate-compose: $file OK ($("${compose[@]}" version --short 2>/dev/null || echo "${compose[*]}"))"
