// libFuzzer target: the CONNECT request-head parser, the first code that sees internet bytes.
// Checks invariants beyond "no crash": an accepted head names a valid host:port, and an IP
// target re-parses to the same address.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/request_head.h"
#include "shared/base64.h"
#include "shared/net.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t end = dingbridge::proxy::find_head_end(input);
    // The tunnel searches a head as it arrives, from where the last search ended: the same end.
    for (std::size_t cut : {size / 3, size / 2, size - (size > 0 ? 1 : 0)}) {
        if (dingbridge::proxy::find_head_end(input.substr(0, cut)) != std::string_view::npos) continue;
        if (dingbridge::proxy::find_head_end(input, cut) != end) __builtin_trap();
    }
    const std::string_view head = end == std::string_view::npos ? input : input.substr(0, end);
    const auto result = dingbridge::proxy::parse_connect_head(head);
    if (result.error == dingbridge::proxy::HeadError::none) {
        const auto& r = result.request;
        if (r.port == 0 || r.host.empty()) __builtin_trap();
        // Only a head ending in CRLF CRLF is ever accepted (bare-LF ends are refused).
        if (head.size() < 4 || head.substr(head.size() - 4) != "\r\n\r\n") __builtin_trap();
        if (r.host_is_ip) {
            auto ip = dingbridge::IpAddress::parse(r.host);
            if (!ip || ip->to_string() != r.host) __builtin_trap();
        } else if (!dingbridge::is_valid_hostname(r.host)) {
            __builtin_trap();
        }
    }
    (void)dingbridge::base64_decode(input);
    (void)dingbridge::Cidr::parse(input);
    return 0;
}
