#!/bin/sh
# layers.sh - the layering of lib/ (docs/design.md): every file of
# lib/<layer>/ includes only its own folder, the layers below it, fa4cp.h,
# config.h, system headers and kernels/; and no two source files of the
# library call each other in a circle (read from the built objects with nm).
# TAP.
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
layers="core thd attn comm cp world workload run"

rank() { # the position of a layer, bottom = 0; -1 if none
    i=0
    for l in $layers; do
        [ "$l" = "$1" ] && { echo $i; return; }
        i=$((i + 1))
    done
    echo -1
}

n=0 bad=0
out=$(mktemp) || exit 99
trap 'rm -f "$out"' EXIT
for l in $layers; do
    [ -d "$top_srcdir/lib/$l" ] || { echo "not ok - lib/$l is missing"; bad=1; continue; }
    mine=$(rank "$l")
    for f in "$top_srcdir/lib/$l"/*.[ch]; do
        [ -e "$f" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
            num=${line%%:*}
            inc=$(printf '%s\n' "$line" | sed 's/.*include[[:space:]]*"\([^"]*\)".*/\1/')
            where="lib/$l/$(basename "$f"):$num"
            case $inc in
            fa4cp.h | config.h | ../../kernels/*) continue ;;
            */*)
                to=${inc%%/*}
                theirs=$(rank "$to")
                if [ "$theirs" -lt 0 ]; then
                    echo "$where: \"$inc\" names no layer of lib/"
                elif [ "$theirs" -ge "$mine" ]; then
                    echo "$where: \"$inc\" goes up or across: $l may include only layers below it"
                fi
                ;;
            *)
                [ -e "$top_srcdir/lib/$l/$inc" ] ||
                    echo "$where: \"$inc\" is not in lib/$l/: name its layer (\"layer/$inc\")"
                ;;
            esac
        done
    done
done >"$out"
n=$((n + 1))
if [ -s "$out" ]; then
    echo "not ok $n - every #include of lib/ goes down the layers"
    sed 's/^/# /' "$out"
else
    echo "ok $n - every #include of lib/ goes down the layers"
fi

# Circles between the library's files: file A calls B when A's object
# needs a symbol that B's defines.
objs=$(find "$top_builddir/lib" -path '*/.libs/*' -prune -o -name 'libfa4cp_la-*.o' -print 2>/dev/null | sort)
n=$((n + 1))
if [ -z "$objs" ] || ! command -v nm >/dev/null 2>&1; then
    echo "ok $n # SKIP no built objects of libfa4cp (or no nm) to read the calls from"
else
    for o in $objs; do
        b=$(basename "$o" .o | sed 's/^libfa4cp_la-//')
        nm "$o" | awk -v f="$b" '$2 ~ /^[TDBR]$/ {print "D", f, $3} $1 == "U" {print "U", f, $2}'
    done | awk '
        $1 == "D" { def[$3] = $2 }
        $1 == "U" { use[++n] = $2 " " $3 }
        END {
            for (i = 1; i <= n; i++) {
                split(use[i], a, " ")
                if ((a[2] in def) && def[a[2]] != a[1]) edge[a[1] " " def[a[2]]] = a[2]
            }
            for (e in edge) { split(e, a, " "); succ[a[1]] = succ[a[1]] " " a[2] }
            # a circle: a path back to the start (depth-first from every file)
            for (s in succ) {
                delete seen; top = 1; stack[1] = s; path[1] = s
                while (top > 0) {
                    v = stack[top]; p = path[top]; top--
                    k = split(succ[v], w, " ")
                    for (j = 1; j <= k; j++) {
                        if (w[j] == s) { print "# circle: " p " -> " s; found = 1; break }
                        if (!(w[j] in seen)) { seen[w[j]] = 1; top++; stack[top] = w[j]; path[top] = p " -> " w[j] }
                    }
                    if (found) break
                }
                if (found) break
            }
            exit found
        }' >"$out"
    if [ $? -eq 0 ]; then
        echo "ok $n - no two files of libfa4cp call each other in a circle"
    else
        echo "not ok $n - no two files of libfa4cp call each other in a circle"
        cat "$out"
    fi
fi
echo "1..$n"
