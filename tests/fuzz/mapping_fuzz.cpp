// libFuzzer target: mapping.yaml loading (templates, filters, type checks) over arbitrary text.
// Any input either compiles or throws ConfigError (or a yaml-cpp exception turned into one);
// nothing else may escape, crash or hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/mapping/mapping.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace dingbridge::agent;
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        Mapping m = Mapping::load_string(text, "fuzz.yaml");
        dingbridge::agent::dingtalk::UserItem u;
        u.userid = "u";
        u.email = "A@B";
        u.hired_date = 1;
        (void)m.map_user(u);
        (void)m.skip_user(u);
    } catch (const dingbridge::ConfigError&) {
    } catch (const YAML::Exception&) {
    }
    return 0;
}
