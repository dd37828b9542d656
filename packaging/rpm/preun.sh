# Removal (not upgrade): stop and disable the units, like the .deb's prerm/postrm.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl disable --now dingbridge-agent-sync.timer dingbridge-agent-web.service dingbridge-agent.service \
    dingbridge-proxy.service >/dev/null 2>&1 || :
fi
exit 0
