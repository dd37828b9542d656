# Like the .deb: on first install the proxy and the agent service are enabled and started (the
# sync timer stays disabled); on upgrade %postun restarts them. The package owns
# /var/lib/dingbridge and /var/log/dingbridge (0750 dingbridge).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -eq 1 ]; then
    systemctl enable --now dingbridge-proxy.service dingbridge-agent.service >/dev/null 2>&1 || :
  fi
fi
exit 0
