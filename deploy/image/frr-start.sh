#!/bin/bash
# Entry point of the ospfd sidecar: watchfrr in the foreground, starting and
# restarting the daemons the mounted /etc/frr/daemons file enables.
set -e
. /usr/lib/frr/frrcommon.sh
chown -R frr:frr /var/run/frr /var/lib/frr /var/tmp/frr 2>/dev/null || true
exec /usr/lib/frr/watchfrr $(daemon_list)
