#!/usr/bin/env bash
# Install NiiVue from npm (versions pinned by package-lock.json) and copy its browser build and
# the licences of everything it bundles into the Python package (`make viewer` runs this).
set -euo pipefail
cd "$(dirname "$0")"
dest=../src/strokelrp/report/viewer_assets
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
{
  echo "Licences of the npm packages installed with @niivue/niivue (its run-time dependencies,"
  echo "bundled into niivue.umd.js; the rollup build tool is left out)."
  for pkg in node_modules/*/package.json node_modules/@*/*/package.json; do
    dir=$(dirname "$pkg")
    case "$dir" in node_modules/@niivue/niivue | node_modules/@rollup/*) continue ;; esac
    for lic in "$dir"/LICEN[CS]E* "$dir"/licen[cs]e*; do
      [ -f "$lic" ] || continue
      printf '\n==== %s ====\n\n' "${dir#node_modules/}"
      cat "$lic"
    done
  done
} > "$dest/THIRD_PARTY_LICENSES.tmp"
cp node_modules/@niivue/niivue/dist/niivue.umd.js "$dest/niivue.umd.js.tmp"
mv "$dest/THIRD_PARTY_LICENSES.tmp" "$dest/THIRD_PARTY_LICENSES"
mv "$dest/niivue.umd.js.tmp" "$dest/niivue.umd.js"
