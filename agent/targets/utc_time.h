#pragma once
// A target's UTC timestamp -> Unix seconds: SCIM's meta.lastModified ("2026-11-30T07:07:04.773Z")
// and LDAP's modifyTimestamp (GeneralizedTime "20261130070704Z") tell when a user was disabled.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace dingbridge::agent {

// `format` reads year, month, day, hour, minute and second (six %d conversions); 0 when `t` is
// shorter than `min_size` or does not match.
inline std::int64_t utc_seconds(const std::string& t, const char* format, std::size_t min_size) {
    std::tm tm{};
    if (t.size() < min_size ||
        std::sscanf(t.c_str(), format, &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm));
}

}  // namespace dingbridge::agent
