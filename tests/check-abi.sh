#!/bin/sh
# The plugin ABI as the linker sees it: libwattbridge exports only wb_*
# symbols; the WB_1.x nodes hold exactly the functions the installed
# headers declare (an internal wb_ function must go to WB_PRIVATE, or it
# would silently become ABI), and nothing else is exported unversioned.
#   check-abi.sh LIBWATTBRIDGE.so API_HEADER_DIR
set -eu
lib=$1
headers=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# defined global dynamic symbols: ADDR g FLAGS SECTION SIZE VERSION NAME
objdump -T "$lib" | awk 'NF == 7 && $2 == "g" && $4 != "*UND*" && $6 != $7 {print $6, $7}' > "$tmp/all"
status=0
if awk '$2 !~ /^wb_/ && $2 !~ /^WB_/' "$tmp/all" | grep -q .; then
    echo "exported symbols outside wb_*:"; awk '$2 !~ /^wb_/ && $2 !~ /^WB_/' "$tmp/all"; status=1
fi
awk '$1 ~ /^WB_1\.[0-9]+$/ {print $2}' "$tmp/all" | sort > "$tmp/exported"
# declarations: a name followed by '(' at the start of a prototype line
grep -hE '^[A-Za-z].*\bwb_[a-z0-9_]+\(' "$headers"/*.h | grep -oE '\bwb_[a-z0-9_]+\(' | tr -d '(' | sort -u > "$tmp/declared"
if ! diff -u "$tmp/declared" "$tmp/exported"; then
    echo "WB_1.x differs from the functions api/wattbridge/*.h declares (- declared only, + exported only)"
    status=1
fi
echo "$(wc -l < "$tmp/exported") functions in WB_1.x ($(awk '$1 == "WB_1.0"' "$tmp/all" | wc -l) in WB_1.0), $(awk '$1 == "WB_PRIVATE"' "$tmp/all" | wc -l) in WB_PRIVATE"
exit $status
