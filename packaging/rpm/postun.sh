# Upgrade: restart running services on the new binaries (a reload would keep the old ones).
# Erase: RPM has no purge; /var/lib/dingbridge, /var/log/dingbridge and the dingbridge account
# stay (docs/install.md says how to remove them), edited configuration is kept as .rpmsave.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart dingbridge-proxy.service dingbridge-agent.service >/dev/null 2>&1 || :
  fi
fi
exit 0
