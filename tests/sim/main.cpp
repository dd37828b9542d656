// dingtalk-sim: parses the command line, builds the org, the simulator, the event hub and the
// HTTPS server, then runs the single event-loop thread until SIGINT/SIGTERM.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "shared/dingtalk_crypto.h"
#include "tests/sim/events.h"
#include "tests/sim/server.h"
#include "tests/sim/sim.h"

namespace {

bool write_file_atomic(const std::string& path, const std::string& content) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << content;
        if (!out.good()) return false;
    }
    return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    sim::SimOptions so;
    sim::EventOptions eo;
    std::string listen = "127.0.0.1:0", port_file, cert, key, generate, org_file, dump, log_level = "info";
    bool dump_only = false, root_parent_zero = false;
    std::string fanout = "all";

    CLI::App app{
        "dingtalk-sim: a local HTTPS simulator of the DingTalk Open API subset used for contact sync "
        "(tokens, departments, users, departed users, stream gateway, HTTP push). See tests/sim/README.md."};
    app.option_defaults()->always_capture_default();
    app.add_option("--listen", listen, "Listen address HOST:PORT (port 0 = any free port)");
    app.add_option("--port-file", port_file, "Write the bound port (one line) to this file once listening");
    app.add_option("--cert", cert, "Server certificate chain (PEM)");
    app.add_option("--key", key, "Server private key (PEM)");
    app.add_option("--app-key", so.app_key, "AppKey accepted by /gettoken, /v1.0/oauth2/accessToken, connections/open");
    app.add_option("--app-secret", so.app_secret, "AppSecret for the app");
    app.add_option("--corp-id", so.corp_id, "CorpId (also accepted as /gettoken?corpid=)");
    app.add_option("--app-id", so.app_id, "appId placed in stream frame headers");
    app.add_option("--token-ttl", so.token_ttl_s, "Access-token lifetime in seconds")->check(CLI::Range(1, 86400 * 30));
    app.add_option("--allow-source", so.allow_sources,
                   "Egress allow-list: source IP allowed to call the API (repeatable; none = allow all)");
    app.add_option("--qps", so.qps, "Per-app per-API calls per second before the throttle error (0 = unlimited)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--throttle-code", so.throttle_code, "sub_code of the topapi throttle error (88 + this)")
        ->check(CLI::IsMember({"90018", "90002"}));
    app.add_option("--source-limit", so.source_limit,
                   "Calls per source IP per window before a ban with the deny page (0 = unlimited)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--source-window", so.source_window_s, "Per-source window in seconds")->check(CLI::PositiveNumber);
    app.add_option("--source-ban", so.source_ban_s, "Ban length in seconds after the per-source limit")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--admin-token", so.admin_token,
                   "Require header x-sim-admin-token on /_sim/* (always loopback-only)");
    app.add_flag("--plain-token-errors", so.plain_token_errors,
                 "Answer bad tokens on topapi with bare errcode 40014 instead of 88/sub_code 40014");
    app.add_flag("--listsub-hide-hidden", so.listsub_hide_hidden, "Omit hide_dept departments from listsub/listsubid");
    app.add_flag("--root-parent-zero", root_parent_zero, "Give the root department parent_id 0 instead of omitting it");
    app.add_option("--emp-leave-max", so.emp_leave_max_results, "Largest maxResults accepted by empLeaveRecords")
        ->check(CLI::PositiveNumber);
    auto* gen = app.add_option("--generate", generate,
                               "Generate an org: users=N,departments=M,depth=D,seed=S (deterministic; the default when "
                               "--org is absent is users=50,departments=8,depth=3,seed=1)");
    auto* org_opt = app.add_option("--org", org_file, "Load the org from a fixture JSON file (README: Fixture format)");
    gen->excludes(org_opt);
    app.add_option("--dump", dump, "Write the org as fixture JSON at startup and again at exit");
    app.add_flag("--dump-only", dump_only, "Write --dump and exit without serving");
    app.add_option("--seed", so.seed, "Seed of the fault-injection probability RNG");
    app.add_option("--push-url", eo.push_url, "HTTP push receiver URL (http:// or https://); enables push mode");
    app.add_option("--push-token", eo.push_token, "Push signature token");
    app.add_option("--push-aes-key", eo.push_aes_key, "Push aes_key (43 chars [A-Za-z0-9])");
    app.add_option("--push-ca", eo.push_ca, "CA file to verify an https push receiver (default: no verification)");
    app.add_option("--push-retry-ms", eo.push_retry_ms, "First retry delay of a failed push (doubles)")
        ->check(CLI::PositiveNumber);
    app.add_option("--push-retry-max-ms", eo.push_retry_max_ms, "Cap of the push retry delay")
        ->check(CLI::PositiveNumber);
    app.add_option("--push-timeout-ms", eo.push_timeout_ms, "Per-push I/O timeout (check_url always uses 1500)")
        ->check(CLI::PositiveNumber);
    app.add_option("--stream-ack-timeout-ms", eo.ack_timeout_ms, "Redeliver an EVENT not ACKed within this time")
        ->check(CLI::PositiveNumber);
    app.add_option("--stream-later-delay-ms", eo.later_delay_ms, "Redelivery delay after a LATER / non-200 ACK")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--stream-ping-interval", eo.ping_interval_s, "Seconds between SYSTEM ping frames (0 = none)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--stream-disconnect-after", eo.disconnect_after_s,
                   "Send SYSTEM disconnect this many seconds after a connection opens (0 = never)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--stream-disconnect-grace", eo.disconnect_grace_s, "Seconds between disconnect frame and close")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--stream-endpoint-host", so.stream_endpoint_host,
                   "Host name in the connections/open endpoint (default: the request's Host), e.g. localhost");
    app.add_option("--stream-fanout", fanout, "Deliver each EVENT to all connections or to one (round-robin)")
        ->check(CLI::IsMember({"all", "one"}));
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
    CLI11_PARSE(app, argc, argv);

    spdlog::set_level(spdlog::level::from_str(log_level));
    eo.fanout_all = fanout == "all";

    // ---- configuration (errors exit non-zero with one message) ----
    sim::OrgOptions oo{root_parent_zero};
    std::unique_ptr<sim::Org> org;
    if (!org_file.empty()) {
        std::ifstream in(org_file, std::ios::binary);
        if (!in) {
            std::cerr << "dingtalk-sim: cannot read --org " << org_file << "\n";
            return 2;
        }
        std::stringstream ss;
        ss << in.rdbuf();
        std::string error;
        org = sim::Org::load(ss.str(), error, oo);
        if (!org) {
            std::cerr << "dingtalk-sim: " << org_file << ": " << error << "\n";
            return 2;
        }
    } else {
        sim::GenerateSpec spec;
        if (auto s =
                sim::parse_generate_spec(generate.empty() ? "users=50,departments=8,depth=3,seed=1" : generate, spec);
            !s.ok()) {
            std::cerr << "dingtalk-sim: --generate: " << s.error << "\n";
            return 2;
        }
        org = sim::Org::generate(spec, oo);
    }
    if (!dump.empty() && !write_file_atomic(dump, org->dump())) {
        std::cerr << "dingtalk-sim: cannot write --dump " << dump << "\n";
        return 2;
    }
    if (dump_only) return dump.empty() ? 2 : 0;
    if (cert.empty() || key.empty()) {
        std::cerr << "dingtalk-sim: --cert and --key are required to serve\n";
        return 2;
    }
    if (!eo.push_url.empty() && !dingbridge::dingtalk_crypto::valid_aes_key(eo.push_aes_key)) {
        std::cerr << "dingtalk-sim: --push-aes-key must be 43 characters of [A-Za-z0-9]\n";
        return 2;
    }
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) {
        std::cerr << "dingtalk-sim: --listen must be HOST:PORT\n";
        return 2;
    }
    std::string host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    int port = 0;
    try {
        port = std::stoi(listen.substr(colon + 1));
    } catch (...) {
        port = -1;
    }
    if (port < 0 || port > 65535) {
        std::cerr << "dingtalk-sim: --listen port must be 0..65535\n";
        return 2;
    }

    sim::net::io_context io(1);
    sim::ssl::context tls(sim::ssl::context::tls_server);
    try {
        tls.set_options(sim::ssl::context::default_workarounds | sim::ssl::context::no_sslv2 |
                        sim::ssl::context::no_sslv3 | sim::ssl::context::no_tlsv1 | sim::ssl::context::no_tlsv1_1);
        tls.use_certificate_chain_file(cert);
        tls.use_private_key_file(key, sim::ssl::context::pem);
    } catch (const std::exception& e) {
        std::cerr << "dingtalk-sim: TLS setup (--cert " << cert << ", --key " << key << "): " << e.what() << "\n";
        return 2;
    }

    sim::Simulator simulator(so, std::move(org));
    sim::EventHub hub(io, eo, so);
    simulator.set_event_sink(&hub);
    sim::HttpsServer server(io, tls, simulator, hub);
    unsigned short bound = 0;
    try {
        bound = server.listen(host, static_cast<unsigned short>(port));
    } catch (const std::exception& e) {
        std::cerr << "dingtalk-sim: cannot listen on " << listen << ": " << e.what() << "\n";
        return 2;
    }
    hub.start();
    spdlog::info("dingtalk-sim listening on https://{}:{} ({} users, {} departments)", host, bound,
                 simulator.org().user_count(false), simulator.org().dept_count());
    std::cout << "listening " << host << ":" << bound << std::endl;
    if (!port_file.empty() && !write_file_atomic(port_file, std::to_string(bound) + "\n")) {
        std::cerr << "dingtalk-sim: cannot write --port-file " << port_file << "\n";
        return 2;
    }

    sim::net::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int sig) {
        spdlog::info("signal {}: shutting down", sig);
        if (!dump.empty() && !write_file_atomic(dump, simulator.org().dump()))
            spdlog::error("cannot write --dump {}", dump);
        server.close();
        hub.stop();
        io.stop();
    });
    std::signal(SIGPIPE, SIG_IGN);
    // Handlers report errors as values; this only keeps a test fixture alive if one slips through.
    for (;;) {
        try {
            io.run();
            break;
        } catch (const std::exception& e) {
            spdlog::error("event loop: unexpected exception: {}", e.what());
        }
    }
    return 0;
}
