#!/bin/sh
# spanflow package: stop the services before their binary goes, on removal
# only (deb: "remove"; rpm: 0 packages left), not on upgrade.
set -e
case "$1" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now spanflow-collector.service spanflow-exporter.service spanflow-indexer.service >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
