#!/usr/bin/env bash
# Install a real Home Assistant core for the `ha` tests into its own venv (HA pins aiohttp and friends, so never
# into the project's venv), with pytest-homeassistant-custom-component (the same HA pinned) for the integration's
# unit tests. Idempotent: a stamp records what was installed; a second run is a no-op.
# Usage: tests/ha/install.sh [DIR] [VERSION]   (default .cache/ha and 2024.3.3, the newest release for Python 3.11;
#        the tests read CAMHUB_HA_VENV, default .cache/ha/venv). PYTHON picks the interpreter (default python3.11).
#        tests/ha/install.sh .cache/ha-2025.4 2025.4.4   with PYTHON=python3.13: HA 2025.4 needs Python 3.13.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-.cache/ha}"
VERSION="${2:-2024.3.3}"
# pytest-homeassistant-custom-component pins one HA release per version of its own.
case "$VERSION" in
  2024.3.3) PHCC=0.13.109 ;;
  2025.4.4) PHCC=0.13.236 ;;
  *) echo "tests/ha/install.sh: no pytest-homeassistant-custom-component known for HA $VERSION" >&2; exit 2 ;;
esac
VENV="$DIR/venv"
# The stamp names what this script and the requirements walker were when they ran: editing either re-runs it.
STAMP="$VENV/.camhub-ha-$VERSION-$(cat tests/ha/install.sh tests/ha/requirements.py | sha256sum | cut -c1-12)"
[ -f "$STAMP" ] && exit 0
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
mkdir -p "$DIR"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# josepy 2.x (through acme / hass-nabucasa) makes every HTTP request answer 500 (no ComparableX509).
"$VENV/bin/pip" install --quiet "homeassistant==$VERSION" "josepy<2"
# The integrations the tests load (and what they depend on, after_dependencies too: HA imports those, e.g.
# analytics imports recorder) pip-install their requirements at first start otherwise: install them now,
# under HA's own constraints, so the tests can run HA with --skip-pip.
"$VENV/bin/python" tests/ha/requirements.py > "$DIR/requirements.txt"
CONSTRAINTS="$("$VENV/bin/python" -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))')"
"$VENV/bin/pip" install --quiet -r "$DIR/requirements.txt" -c "$CONSTRAINTS" "josepy<2"
"$VENV/bin/pip" install --quiet "pytest-homeassistant-custom-component==$PHCC" "homeassistant==$VERSION" "josepy<2"
rm -f "$VENV"/.camhub-ha-*
touch "$STAMP"
