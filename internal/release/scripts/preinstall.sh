#!/bin/sh
# spanflow package: the system user the services run as, created once
# (installing again or upgrading finds it and changes nothing).
set -e
if ! getent group spanflow >/dev/null; then
  groupadd --system spanflow
fi
if ! getent passwd spanflow >/dev/null; then
  nologin=/usr/sbin/nologin
  [ -x "$nologin" ] || nologin=/sbin/nologin
  useradd --system --gid spanflow --no-create-home --home-dir /var/lib/spanflow \
    --shell "$nologin" --comment "spanflow exporter, collector and indexer" spanflow
fi
exit 0
