// libFuzzer target: every DingTalk response parser over arbitrary bytes (responses come from the
// network, through a proxy). A parser may return any failure but must never crash, hang or read
// outside the buffer. Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DDINGBRIDGE_FUZZ=ON, target
// dingtalk_parse_fuzz.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/dingtalk/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace dingbridge::agent::dingtalk;
    const std::string input(reinterpret_cast<const char*>(data), size);
    {
        std::string body = input;
        auto r = parse_user_list("/topapi/v2/user/list", body);
        if (!r.ok()) (void)r.failure().message();
    }
    {
        std::string body = input;
        (void)parse_listsub("/topapi/v2/department/listsub", body);
    }
    {
        std::string body = input;
        (void)parse_dept_get("/topapi/v2/department/get", body);
    }
    {
        std::string body = input;
        (void)parse_gettoken("/gettoken", body);
    }
    (void)ip_from_allowlist_message(input);
    (void)scopes_from_permission_message(input);
    return 0;
}
