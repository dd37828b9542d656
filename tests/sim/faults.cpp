#include "tests/sim/faults.h"

#include <algorithm>
#include <utility>

namespace sim {

bool glob_match(std::string_view p, std::string_view t) {
    // Iterative '*' matcher with single backtrack point: linear enough for short paths.
    size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
    while (ti < t.size()) {
        if (pi < p.size() && p[pi] == '*') {
            star = pi++;
            mark = ti;
        } else if (pi < p.size() && p[pi] == t[ti]) {
            ++pi;
            ++ti;
        } else if (star != std::string_view::npos) {
            pi = star + 1;
            ti = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

namespace {
// Every fault kind and its name in /_sim/faults specs and stats (one list for both directions).
constexpr std::pair<FaultKind, std::string_view> kFaultKinds[] = {
    {FaultKind::http_status, "http_status"},
    {FaultKind::busy, "busy"},
    {FaultKind::throttle, "throttle"},
    {FaultKind::slow, "slow"},
    {FaultKind::malformed, "malformed"},
    {FaultKind::truncated, "truncated"},
    {FaultKind::drop, "drop"},
    {FaultKind::token_invalid, "token_invalid"},
    {FaultKind::quota, "quota"},
    {FaultKind::errcode, "errcode"},
};
}  // namespace

std::optional<FaultKind> parse_fault_kind(std::string_view s) {
    if (s == "5xx") return FaultKind::http_status;
    for (const auto& [kind, name] : kFaultKinds)
        if (s == name) return kind;
    return std::nullopt;
}

const char* fault_kind_name(FaultKind k) {
    for (const auto& [kind, name] : kFaultKinds)
        if (kind == k) return name.data();
    return "?";
}

bool FaultTable::add(simdjson::dom::element spec, std::string& error, std::vector<uint64_t>& ids) {
    using simdjson::dom::element_type;
    if (spec.type() == element_type::OBJECT) return add_one(spec, error, ids);
    if (spec.type() == element_type::ARRAY) {
        for (simdjson::dom::element e : simdjson::dom::array(spec)) {
            if (e.type() != element_type::OBJECT) {
                error = "each fault must be an object";
                return false;
            }
            if (!add_one(e, error, ids)) return false;
        }
        return true;
    }
    error = "expected a fault object or an array of them";
    return false;
}

bool FaultTable::add_one(simdjson::dom::object o, std::string& error, std::vector<uint64_t>& ids) {
    FaultRule r;
    std::string_view s;
    if (o["path"].get(s) != simdjson::SUCCESS) {
        error = "fault needs \"path\" (a pattern such as \"/topapi/v2/user/*\")";
        return false;
    }
    r.pattern = std::string(s);
    if (o["kind"].get(s) != simdjson::SUCCESS) {
        error =
            "fault needs \"kind\": http_status, busy, throttle, slow, malformed, truncated, drop, token_invalid, "
            "quota, "
            "errcode";
        return false;
    }
    auto k = parse_fault_kind(s);
    if (!k) {
        error = "unknown fault kind '" + std::string(s) + "'";
        return false;
    }
    r.kind = *k;
    int64_t i = 0;
    if (o["status"].get(i) == simdjson::SUCCESS) r.status = static_cast<int>(i);
    if (r.status < 100 || r.status > 599) {
        error = "status must be an HTTP status code";
        return false;
    }
    if (r.kind == FaultKind::errcode) {
        if (o["errcode"].get(r.errcode) != simdjson::SUCCESS || r.errcode == 0) {
            error = "an errcode fault needs a non-zero \"errcode\"";
            return false;
        }
        r.errmsg = "simulated error";
        if (o["errmsg"].get(s) == simdjson::SUCCESS) r.errmsg = std::string(s);
    }
    if (o["delay_ms"].get(i) == simdjson::SUCCESS) r.delay_ms = static_cast<int>(std::clamp<int64_t>(i, 0, 600000));
    if (r.kind == FaultKind::slow && r.delay_ms == 0) r.delay_ms = 2000;
    if (o["count"].get(i) == simdjson::SUCCESS) r.remaining = i;
    double p = 1.0;
    if (o["probability"].get(p) == simdjson::SUCCESS) {
        if (p < 0 || p > 1) {
            error = "probability must be within 0..1";
            return false;
        }
        r.probability = p;
    } else if (int64_t pi = 0; o["probability"].get(pi) == simdjson::SUCCESS) {
        r.probability = pi >= 1 ? 1.0 : 0.0;
    }
    r.id = next_id_++;
    ids.push_back(r.id);
    rules_.push_back(std::move(r));
    return true;
}

std::optional<FaultRule> FaultTable::pick(std::string_view path) {
    for (auto& r : rules_) {
        if (r.remaining == 0 || !glob_match(r.pattern, path)) continue;
        if (r.probability < 1.0 && std::uniform_real_distribution<double>(0, 1)(rng_) >= r.probability) continue;
        if (r.remaining > 0) --r.remaining;
        ++r.hits;
        return r;
    }
    return std::nullopt;
}

void FaultTable::write(JsonWriter& w) const {
    w.begin_array();
    for (const auto& r : rules_) {
        w.begin_object().kv("id", r.id).kv("path", r.pattern).kv("kind", fault_kind_name(r.kind));
        w.kv("status", r.status).kv("delay_ms", r.delay_ms).kv("remaining", r.remaining);
        w.kv("probability", r.probability).kv("hits", r.hits).end_object();
    }
    w.end_array();
}

}  // namespace sim
