#!/bin/sh
# spanflow package: make systemd see the units. They stay disabled: enable
# them once the configuration in /etc/spanflow is yours (docs/install.md).
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  # An upgrade restarts the services that were running, on the new binary.
  for unit in spanflow-collector.service spanflow-exporter.service spanflow-indexer.service; do
    systemctl try-restart "$unit" >/dev/null 2>&1 || true
  done
fi
exit 0
