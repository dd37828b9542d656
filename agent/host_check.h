#pragma once
// Checks of the host that a configuration alone cannot prove: CA files that exist, are readable
// and hold at least one PEM certificate; a state directory (and the files the agent keeps in it)
// that the current user can write. Each problem names the agent.yaml key it comes from, so that
// `check-config` and `sync` tell an administrator which line to fix, or which user to run as.

#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"

namespace dingbridge::agent {

// "agent.yaml: dingtalk.ca_file: /etc/x.pem: ..." for each problem; empty when all is well.
std::vector<std::string> check_host(const AgentConfig& config);

// Only the writability part (state_dir, its state.db / agent.lock, target.path): what `sync` needs.
std::vector<std::string> check_writable(const AgentConfig& config);

// When the agent runs as root on a state directory owned by another user (the service account),
// the files it would create there would be root's and the service could no longer write them.
std::optional<std::string> root_on_service_state(const AgentConfig& config);

}  // namespace dingbridge::agent
