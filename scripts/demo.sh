#!/usr/bin/env bash
# Set everything up, then run the whole loop on the bundled example: `tuneloop demo`.
# Pass --quick for the 3-minute version; the project is created in ./demo-project by default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tuneloop demo "$@"
