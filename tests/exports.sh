#!/bin/sh
# exports.sh - the shared libfa4cp exports exactly the functions that fa4cp.h
# declares with FA4CP_API: no internal helper, no runner or tool code, nothing
# of the static archives linked in; and every function of fa4cp.h carries
# FA4CP_API (one without it would be hidden).  TAP.
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
h="$top_srcdir/lib/fa4cp.h"
echo "1..3"
bare=$(grep -nE '^[a-z_][a-z0-9_ ]*[ *]fa4cp_[a-z0-9_]+\(' "$h" | grep -v ':typedef')
if [ -z "$bare" ]; then
    echo "ok 1 - every function of fa4cp.h is declared with FA4CP_API"
else
    echo "not ok 1 - every function of fa4cp.h is declared with FA4CP_API"
    printf '%s\n' "$bare" | sed 's/^/# without FA4CP_API: lib\/fa4cp.h:/'
fi
so=$(ls "$top_builddir"/lib/.libs/libfa4cp.so.*.*.* 2>/dev/null | head -n 1)
if [ -z "$so" ] || ! command -v nm >/dev/null 2>&1; then
    echo "ok 2 # SKIP no shared libfa4cp in this build (--disable-shared) or no nm"
    echo "ok 3 # SKIP no shared libfa4cp in this build (--disable-shared) or no nm"
    exit 0
fi
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
# the declared functions: FA4CP_API ... name(  (the name is on the first line)
sed -n 's/^FA4CP_API[^(]*[^a-zA-Z0-9_]\(fa4cp_[a-zA-Z0-9_]*\)(.*/\1/p' "$h" | sort -u >"$tmp/declared"
# the exported ones: defined dynamic symbols, less the names the toolchain
# reserves for itself (a leading underscore: _init, _fini, sanitizer hooks)
nm -D --defined-only "$so" | awk 'NF >= 3 {print $3}' | sed 's/@.*//' | grep -v '^_' |
    sort -u >"$tmp/exported"
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -z "$extra" ]; then
    echo "ok 2 - $(basename "$so") exports nothing that fa4cp.h does not declare ($(wc -l <"$tmp/exported") symbols)"
else
    echo "not ok 2 - $(basename "$so") exports nothing that fa4cp.h does not declare"
    printf '%s\n' "$extra" | head -n 40 | sed 's/^/# exported, not in fa4cp.h: /'
fi
if [ -z "$missing" ]; then
    echo "ok 3 - every function of fa4cp.h is exported ($(wc -l <"$tmp/declared") functions)"
else
    echo "not ok 3 - every function of fa4cp.h is exported"
    printf '%s\n' "$missing" | sed 's/^/# declared, not exported: /'
fi
