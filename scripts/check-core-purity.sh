#!/usr/bin/env bash
# The sans-IO core (src/sip, src/txn, src/location, src/registrar, src/redis,
# src/placement.rs, src/steer) must not open sockets, read clocks, touch glommio or use
# unsafe (ARCHITECTURE.md "Modules"; ../shared/STYLE.md §8 rule 1).
# Comments are ignored, so docs may still say "no glommio here".
set -euo pipefail
cd "$(dirname "$0")/.."

core_dirs=(src/sip src/txn src/location src/registrar src/redis src/placement.rs src/steer)
# POSIX ERE only (no \b): mawk runs the second pass.
unsafe_word='(^|[^A-Za-z0-9_])unsafe([^A-Za-z0-9_]|$)'
forbidden="glommio|socket2|UdpSocket|TcpStream|TcpListener|Instant::now|SystemTime::now|std::thread|libc::|$unsafe_word"
status=0

for dir in "${core_dirs[@]}"; do
    [[ -d "$dir" ]] || continue
    # file:line:code with the // comment part removed, then match.
    hits=$(grep -rnE --include='*.rs' "$forbidden" "$dir" |
        awk -v pat="$forbidden" '{
            text = $0; sub(/^[^:]*:[0-9]+:/, "", text); sub(/\/\/.*/, "", text);
            if (text ~ pat) print
        }' || true)
    if [[ -n "$hits" ]]; then
        echo "core purity: forbidden use in $dir:" >&2
        echo "$hits" >&2
        status=1
    fi
    if [[ -f "$dir/mod.rs" ]] && ! grep -q '^#!\[forbid(unsafe_code)\]' "$dir/mod.rs"; then
        echo "core purity: $dir/mod.rs lacks #![forbid(unsafe_code)]" >&2
        status=1
    fi
done

# unsafe lives only in src/runtime/ (and nowhere in tests or the load generator
# without review): list any other place.
others=$(grep -rlE --include='*.rs' "$unsafe_word" src | grep -v '^src/runtime/' || true)
for file in $others; do
    hits=$(grep -nE "$unsafe_word" "$file" |
        awk -v pat="$unsafe_word" '{ t = $0; sub(/^[0-9]+:/, "", t); sub(/\/\/.*/, "", t); if (t ~ pat) print }' || true)
    if [[ -n "$hits" ]]; then
        echo "core purity: unsafe outside src/runtime/ in $file:" >&2
        echo "$hits" >&2
        status=1
    fi
done

if [[ $status -eq 0 ]]; then
    echo "core purity: ok (${core_dirs[*]})"
fi
exit $status
