#!/bin/sh
# Builds the manual pages into OUTDIR (gzip -9n, as Debian wants them):
#   dingbridge-proxy.1, dingbridge-agent.1 with help2man from --help / --version (the agent's page
#   also carries each command's --help), and dingbridge-{proxy,agent,mapping}.yaml.5 from the
#   documented configs/*.yaml.
# Usage: mkman.sh OUTDIR PROXY_BINARY AGENT_BINARY SOURCE_DIR VERSION
set -eu
out=$1 proxy=$2 agent=$3 src=$4 version=$5
mkdir -p "$out"
inc=$out/agent-commands.h2m
{
	echo "[COMMANDS]"
	# Every command --help lists (so a new one appears without editing this), and `history show`.
	commands=$("$agent" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && NF {print $1}')
	for cmd in $commands "history show"; do
		echo ".SS $cmd"
		echo ".nf"
		# shellcheck disable=SC2086
		"$agent" $cmd --help | sed -e '1,/^$/d' -e 's/\\/\\e/g' -e 's/^\./\\\&./'
		echo ".fi"
	done
} >"$inc"
common=$src/packaging/man/common.h2m
help2man --no-info --section 1 --manual "User Commands" --source "dingbridge $version" \
	--name "HTTPS forwarding (CONNECT) proxy for the DingTalk egress server" \
	--include "$common" --include "$src/packaging/man/proxy.h2m" "$proxy" | gzip -9n >"$out/dingbridge-proxy.1.gz"
help2man --no-info --section 1 --manual "User Commands" --source "dingbridge $version" \
	--name "sync DingTalk contacts into an identity directory through dingbridge-proxy" \
	--include "$inc" --include "$common" --include "$src/packaging/man/agent.h2m" "$agent" |
	gzip -9n >"$out/dingbridge-agent.1.gz"
for f in proxy agent mapping; do
	prog=dingbridge-agent
	[ "$f" = proxy ] && prog=dingbridge-proxy
	python3 "$src/packaging/man/yaml2man.py" "dingbridge-$f.yaml" "$version" "$src/configs/$f.yaml" "$prog" |
		gzip -9n >"$out/dingbridge-$f.yaml.5.gz"
done
