#!/usr/bin/env bash
# Regenerates test/instrument/spec-json.tar.gz: the spec scripts of ../shared/wasm-spec converted by
# wast2json, for machines without wabt. Run after the spec test converted them once (it caches them).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(wast2json --version)
cache="${TMPDIR:-/tmp}/ftwasm-spec-${version}"
[ -f "$cache/converted.json" ] || { echo "run the spec test first (npx vitest run test/instrument/spec.test.ts)"; exit 1; }
tar -czf test/instrument/spec-json.tar.gz -C "$cache" .
ls -la test/instrument/spec-json.tar.gz
