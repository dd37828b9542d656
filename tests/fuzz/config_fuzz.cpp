// libFuzzer target: the proxy configuration loader (YAML → ProxyConfig). Any input must either
// load or throw ConfigError with a position; nothing else may escape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "proxy/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        (void)dingbridge::proxy::parse_proxy_config(dingbridge::ConfigNode::load_string(text, "fuzz.yaml"));
    } catch (const dingbridge::ConfigError&) {
    }
    return 0;
}
