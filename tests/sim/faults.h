#pragma once
// FaultTable: the rules installed through POST /_sim/faults. Each rule names a path pattern
// ('*' matches any run of characters), a fault kind, and how often it fires (a count of
// remaining hits and/or a probability). pick() is called once per DingTalk request and returns
// the first rule that fires, consuming one hit. The RNG is seeded so runs are reproducible.
// Owned by Simulator; single-threaded.

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tests/sim/json.h"

namespace sim {

enum class FaultKind { http_status, busy, throttle, slow, malformed, truncated, drop, token_invalid, quota, errcode };

struct FaultRule {
    uint64_t id = 0;
    std::string pattern;  // e.g. "/topapi/v2/user/*"
    FaultKind kind = FaultKind::http_status;
    int status = 503;        // http_status
    int delay_ms = 0;        // slow (may combine with any kind: response is delayed)
    int64_t errcode = 0;     // errcode: the business error to answer (e.g. 50004, 33012)
    std::string errmsg;      // errcode: its message
    int64_t remaining = -1;  // hits left; -1 = unlimited
    double probability = 1.0;
    uint64_t hits = 0;
};

bool glob_match(std::string_view pattern, std::string_view text);
std::optional<FaultKind> parse_fault_kind(std::string_view s);
const char* fault_kind_name(FaultKind k);

class FaultTable {
public:
    explicit FaultTable(uint64_t seed) : rng_(seed) {}
    // Parses one rule object or an array of them; error names the bad field.
    bool add(simdjson::dom::element spec, std::string& error, std::vector<uint64_t>& ids);
    void clear() { rules_.clear(); }
    std::optional<FaultRule> pick(std::string_view path);
    void write(JsonWriter& w) const;

private:
    bool add_one(simdjson::dom::object o, std::string& error, std::vector<uint64_t>& ids);
    std::vector<FaultRule> rules_;
    std::mt19937_64 rng_;
    uint64_t next_id_ = 1;
};

}  // namespace sim
