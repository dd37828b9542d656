getent group dingbridge >/dev/null || groupadd -r dingbridge
getent passwd dingbridge >/dev/null || useradd -r -g dingbridge -d /var/lib/dingbridge -s /sbin/nologin dingbridge
install -d -o dingbridge -g dingbridge -m 0750 /var/lib/dingbridge
[ -d /run/systemd/system ] && systemctl daemon-reload >/dev/null 2>&1 || true
