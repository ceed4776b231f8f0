#!/usr/bin/env bash
# Makes `import nanovllm` work in Debian's /usr/bin/python3 with the module of a build folder,
# the way `pip install -e` would: writes nanovllm.pth, which holds <build>/python, into the user's
# site-packages (~/.local/lib/python3.X/site-packages, created if missing; Python reads every
# .pth file there at start-up). Nothing is copied, so each rebuild is picked up as it is, and
# running it again only rewrites the same line. Usage: scripts/install-python.sh [build-folder]
# (scripts/build.sh release runs it for build/). To uninstall, delete the nanovllm.pth it names.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
py=${PYTHON:-/usr/bin/python3}
pkg="$(cd "$build" && pwd)/python"
if ! compgen -G "$pkg/nanovllm/_nanovllm*.so" >/dev/null; then
  echo "install-python: no Python module in $pkg (pybind11-dev missing at configure time?); not installed" >&2
  exit 0
fi
# The user's site-packages, unless Python runs with it disabled (PYTHONNOUSERSITE, or set-uid):
# then the system-wide /usr/local one, which Debian's python3 also reads.
site=$("$py" -c 'import site; print(site.getusersitepackages() if site.ENABLE_USER_SITE else "")')
if [ -z "$site" ]; then
  site=$("$py" -c 'import site; print(next(p for p in site.getsitepackages() if p.startswith("/usr/local")))')
fi
mkdir -p "$site"
echo "$pkg" > "$site/nanovllm.pth"
# Check from elsewhere, without PYTHONPATH, that the interpreter now finds this build's module.
found=$(cd / && env -u PYTHONPATH "$py" -c 'import nanovllm, os; print(os.path.dirname(nanovllm.__file__))')
if [ "$found" != "$pkg/nanovllm" ]; then
  echo "install-python: wrote $site/nanovllm.pth, but $py imports nanovllm from $found" >&2
  exit 1
fi
echo "install-python: $py imports nanovllm from $pkg (through $site/nanovllm.pth)"
