#!/usr/bin/env python3
"""Writes the packaged proxy.yaml: configs/proxy.yaml with access_log.file set to the file that
/etc/logrotate.d/dingbridge rotates (the unit's LogsDirectory=). Fails loudly when the example
config no longer has an `access_log:` section with `file: ""`, so packaging is updated with it."""
import sys

src, dst = sys.argv[1], sys.argv[2]
lines = open(src, encoding="utf-8").read().split("\n")
try:
    section = lines.index("access_log:")
    at = next(i for i in range(section + 1, len(lines)) if lines[i] == '  file: ""')
except (ValueError, StopIteration):
    sys.exit("packaging: access_log.file not found in %s; update packaging/packaged_proxy_yaml.py" % src)
lines[at:at + 1] = ["  # Packaged default: rotated by /etc/logrotate.d/dingbridge (SIGHUP reopens it).",
                    '  file: "/var/log/dingbridge/access.log"']
open(dst, "w", encoding="utf-8").write("\n".join(lines))
