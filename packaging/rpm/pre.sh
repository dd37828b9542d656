# The service account (like the .deb's adduser --system --group).
getent group dingbridge >/dev/null || groupadd -r dingbridge
getent passwd dingbridge >/dev/null || \
  useradd -r -g dingbridge -d /var/lib/dingbridge -s /sbin/nologin -c "dingbridge proxy and agent" dingbridge
exit 0
