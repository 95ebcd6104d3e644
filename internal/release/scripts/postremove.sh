#!/bin/sh
# spanflow package: forget the removed units. The configuration in
# /etc/spanflow is kept on removal (dpkg -r, rpm -e keeps changed files as
# .rpmsave); dpkg -P also deletes it, and the state and log directories.
# The spanflow user stays: files it owned may remain.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/spanflow /var/log/spanflow
fi
exit 0
