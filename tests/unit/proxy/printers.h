#pragma once
// Stream printers so Boost.Test can show enum values in failure messages.
#include <ostream>

#include "proxy/policy.h"
#include "proxy/request_head.h"

namespace dingbridge::proxy {
inline std::ostream& operator<<(std::ostream& out, HeadError e) {
    return out << "HeadError(" << static_cast<int>(e) << ")";
}
inline std::ostream& operator<<(std::ostream& out, AuthOutcome e) {
    return out << "AuthOutcome(" << static_cast<int>(e) << ")";
}
}  // namespace dingbridge::proxy
