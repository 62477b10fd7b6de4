#!/usr/bin/env bash
# Render a run's report.html to a PNG with headless Chromium, to look at what a user sees.
#   bench/render_report.sh RUN_DIR OUT.png [WIDTH] [HEIGHT]
# Needs Chromium (Debian: apt-get install -y chromium). The page is drawn in a WIDTH x HEIGHT window (default
# 1500 x 9000 px, enough for the whole report of a 72-class run); what lies below HEIGHT is cut.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 RUN_DIR OUT.png [WIDTH] [HEIGHT]" >&2
  exit 2
fi
run_dir=$1
out=$2
width=${3:-1500}
height=${4:-9000}
html="$(cd "$run_dir" && pwd)/report.html"
[ -f "$html" ] || { echo "$0: no report.html in $run_dir" >&2; exit 1; }
browser=""
for b in chromium chromium-browser chromium-headless-shell google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[ -n "$browser" ] || { echo "$0: no Chromium found (apt-get install -y chromium)" >&2; exit 1; }
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
# A private profile directory: no state shared with other Chromium runs.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$width,$height" --screenshot="$out_abs" "file://$html" >/dev/null 2>&1
[ -s "$out_abs" ] || { echo "$0: $browser wrote no screenshot" >&2; exit 1; }
echo "wrote $out_abs (${width}x${height} px)"
