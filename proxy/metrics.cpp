#include "proxy/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "shared/enum_table.h"

namespace dingbridge::proxy {

namespace {

std::string label_value(const std::string& v) {
    // Prometheus text format: escape backslash, quote and newline in label values.
    std::string out;
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

void line(std::string& out, const std::string& name, const std::string& labels, double value) {
    char buf[64];
    if (value == std::floor(value) && std::fabs(value) < 1e15)
        std::snprintf(buf, sizeof buf, "%.0f", value);
    else
        std::snprintf(buf, sizeof buf, "%.6f", value);
    out += name;
    if (!labels.empty()) out += "{" + labels + "}";
    out += " ";
    out += buf;
    out += "\n";
}

void help(std::string& out, const char* name, const char* type, const char* text) {
    out += std::string("# HELP ") + name + " " + text + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

constexpr auto kDenialNames = enum_table<Denial::source_connections>(
    {"malformed", "method", "head_too_large", "header_timeout", "auth", "source", "destination", "network",
     "tunnel_limit", "rate_limit", "auth_throttled", "max_connections", "loop", "tls_required", "tls_handshake",
     "auth_busy", "source_connections"});
static_assert(kDenialNames.size() == static_cast<std::size_t>(Denial::count_), "a name for every denial");

const char* denial_name(Denial d) { return kDenialNames.get(d, "unknown"); }

void Histogram::observe(std::chrono::microseconds value) {
    const double seconds = static_cast<double>(value.count()) / 1e6;
    std::size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    buckets_[i]++;
    count_++;
    sum_us_ += static_cast<std::uint64_t>(std::max<std::int64_t>(0, value.count()));
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
    std::uint64_t cumulative = 0;
    const std::string sep = labels.empty() ? "" : labels + ",";
    for (std::size_t i = 0; i < kBounds.size(); ++i) {
        cumulative += buckets_[i].load();
        char le[32];
        std::snprintf(le, sizeof le, "%g", kBounds[i]);
        line(out, name + "_bucket", sep + "le=\"" + le + "\"", static_cast<double>(cumulative));
    }
    cumulative += buckets_[kBounds.size()].load();
    line(out, name + "_bucket", sep + "le=\"+Inf\"", static_cast<double>(cumulative));
    line(out, name + "_sum", labels, static_cast<double>(sum_us_.load()) / 1e6);
    line(out, name + "_count", labels, static_cast<double>(count_.load()));
}

int RateBucket::take(double rate, double burst) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (tokens_ < 0) {
        tokens_ = burst;
    } else {
        const double elapsed = std::chrono::duration<double>(now - last_).count();
        tokens_ = std::min(burst, tokens_ + elapsed * rate);
    }
    last_ = now;
    if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return 0;
    }
    return std::max(1, static_cast<int>(std::ceil((1.0 - tokens_) / rate)));
}

TenantRuntime& Metrics::tenant(const std::string& name) {
    std::lock_guard<std::mutex> lock(tenants_mutex_);
    auto& slot = tenants_[name];
    if (!slot) slot = std::make_unique<TenantRuntime>();
    return *slot;
}

void Metrics::count_connection(TenantRuntime& t, int status) {
    std::size_t i = 0;
    while (i + 1 < kStatuses.size() && kStatuses[i] != status) ++i;  // unknown statuses count as 500
    t.by_status[i].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render_prometheus() const {
    std::string out;
    out.reserve(4096);
    std::lock_guard<std::mutex> lock(tenants_mutex_);

    help(out, "dingbridge_proxy_connections_total", "counter",
         "Client connections by tenant and final status (200 = tunnel established).");
    for (const auto& [name, t] : tenants_) {
        for (std::size_t i = 0; i < kStatuses.size(); ++i) {
            const std::uint64_t n = t->by_status[i].load(std::memory_order_relaxed);
            if (n == 0) continue;
            line(out, "dingbridge_proxy_connections_total",
                 "tenant=\"" + label_value(name) + "\",status=\"" + std::to_string(kStatuses[i]) + "\"",
                 static_cast<double>(n));
        }
    }
    help(out, "dingbridge_proxy_active_tunnels", "gauge", "Tunnels currently relaying, by tenant.");
    for (const auto& [name, t] : tenants_) {
        if (name.empty()) continue;
        line(out, "dingbridge_proxy_active_tunnels", "tenant=\"" + label_value(name) + "\"",
             static_cast<double>(t->active.load()));
    }
    help(out, "dingbridge_proxy_bytes_total", "counter",
         "Bytes relayed, by tenant and direction (up = client to destination).");
    for (const auto& [name, t] : tenants_) {
        if (name.empty()) continue;
        line(out, "dingbridge_proxy_bytes_total", "tenant=\"" + label_value(name) + "\",direction=\"up\"",
             static_cast<double>(t->bytes_up.load()));
        line(out, "dingbridge_proxy_bytes_total", "tenant=\"" + label_value(name) + "\",direction=\"down\"",
             static_cast<double>(t->bytes_down.load()));
    }
    help(out, "dingbridge_proxy_denials_total", "counter", "Refused requests by reason.");
    for (int i = 0; i < static_cast<int>(Denial::count_); ++i) {
        line(out, "dingbridge_proxy_denials_total",
             std::string("reason=\"") + denial_name(static_cast<Denial>(i)) + "\"",
             static_cast<double>(denials_[i].load()));
    }
    help(out, "dingbridge_proxy_tenant_denials_total", "counter",
         "Refused requests of identified tenants, by tenant and reason (e.g. destination, tunnel_limit).");
    for (const auto& [name, t] : tenants_) {
        if (name.empty()) continue;
        for (int i = 0; i < static_cast<int>(Denial::count_); ++i) {
            const std::uint64_t n = t->denials[i].load(std::memory_order_relaxed);
            if (n == 0) continue;
            line(out, "dingbridge_proxy_tenant_denials_total",
                 "tenant=\"" + label_value(name) + "\",reason=\"" + denial_name(static_cast<Denial>(i)) + "\"",
                 static_cast<double>(n));
        }
    }
    help(out, "dingbridge_proxy_build_info", "gauge", "Always 1; the version of the running binary as a label.");
    line(out, "dingbridge_proxy_build_info", std::string("version=\"") + DINGBRIDGE_VERSION + "\"", 1);
    help(out, "dingbridge_proxy_auth_failures_total", "counter",
         "Failed proxy authentications (wrong password, unknown user, unusable credentials).");
    line(out, "dingbridge_proxy_auth_failures_total", "", static_cast<double>(auth_failures_.load()));
    help(out, "dingbridge_proxy_dns_failures_total", "counter", "Destination names that could not be resolved.");
    line(out, "dingbridge_proxy_dns_failures_total", "", static_cast<double>(dns_failures_.load()));
    help(out, "dingbridge_proxy_reloads_total", "counter", "Configuration reloads by result.");
    line(out, "dingbridge_proxy_reloads_total", "result=\"success\"", static_cast<double>(reloads_ok_.load()));
    line(out, "dingbridge_proxy_reloads_total", "result=\"failure\"", static_cast<double>(reloads_failed_.load()));
    help(out, "dingbridge_proxy_open_connections", "gauge", "Client connections currently open (any state).");
    line(out, "dingbridge_proxy_open_connections", "", static_cast<double>(open_connections_.load()));
    help(out, "dingbridge_proxy_throttled_replies_waiting", "gauge",
         "Throttled requests whose 429 waits out auth_failures.reply_delay now.");
    line(out, "dingbridge_proxy_throttled_replies_waiting", "", static_cast<double>(delayed_replies_.load()));
    help(out, "dingbridge_proxy_send_thread_bytes_total", "counter",
         "Bytes of plain tunnels sent by the workers' send threads (bulk transfers; included in bytes_total).");
    line(out, "dingbridge_proxy_send_thread_bytes_total", "", static_cast<double>(send_thread_bytes_.load()));
    help(out, "dingbridge_proxy_relay_spliced_bytes_total", "counter",
         "Bytes of plain tunnels moved through kernel pipes (relay: splice, and the bulk transfers of relay: "
         "auto; included in bytes_total).");
    line(out, "dingbridge_proxy_relay_spliced_bytes_total", "", static_cast<double>(spliced_bytes_.load()));
    help(out, "dingbridge_proxy_relay_short_turns_total", "counter",
         "Relay turns of plain tunnels taken as one receive of at most 128 KiB because more than 4 bulk "
         "directions of the worker were reading.");
    line(out, "dingbridge_proxy_relay_short_turns_total", "", static_cast<double>(short_turns_.load()));
    help(out, "dingbridge_proxy_connect_duration_seconds", "histogram", "Time to connect to the destination.");
    connect_latency.render(out, "dingbridge_proxy_connect_duration_seconds", "");
    help(out, "dingbridge_proxy_setup_duration_seconds", "histogram", "Time from accept to tunnel established.");
    setup_latency.render(out, "dingbridge_proxy_setup_duration_seconds", "");
    return out;
}

}  // namespace dingbridge::proxy
