#!/bin/sh
# smoke.sh - `make smoke`: the Quick start's first command, from the build
# directory: every comm shape, causal and not, padded THD, on the CPU with a
# full check, 4 ranks as threads.  Prints the table; exits like fa4cp-run.
here=$(cd "$(dirname "$0")/.." && pwd)
build=${top_builddir:-.}
exec "$build/bin/fa4cp-run" "$here/jobs/smoke.yaml" --ranks 4 -o "$build/smoke-results" "$@"
