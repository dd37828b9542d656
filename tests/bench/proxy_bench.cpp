// proxy-bench: the load client of scripts/bench.sh (not a test). It runs its own loopback
// servers (sink for bulk transfers, echo for tunnel churn and idle tunnels) on a libevent
// thread and drives a proxy — or the servers directly, as the physical limit — with blocking
// client threads. Prints one JSON object per measurement on stdout.
//
//   proxy-bench throughput --proxy 127.0.0.1:3128 --bytes 4GiB
//   proxy-bench tunnels --proxy 127.0.0.1:3128 --clients 64 --seconds 5
//   proxy-bench idle --proxy 127.0.0.1:3128 --tunnels 2000 --pid 1234
//   (--proxy direct: connect straight to the servers)

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// ---- servers (one libevent thread) ----

struct Servers {
    event_base* base = nullptr;
    std::uint16_t sink_port = 0;
    std::uint16_t echo_port = 0;
};

void sink_read(bufferevent* bev, void*) {
    evbuffer* in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

void echo_read(bufferevent* bev, void*) { bufferevent_write_buffer(bev, bufferevent_get_input(bev)); }

void server_event(bufferevent* bev, short what, void*) {
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

void on_accept(evconnlistener* l, evutil_socket_t fd, sockaddr*, int, void* arg) {
    const bool sink = arg != nullptr;
    bufferevent* bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sink) bufferevent_set_max_single_read(bev, 1 << 20);
    bufferevent_setcb(bev, sink ? sink_read : echo_read, nullptr, server_event, nullptr);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

std::uint16_t listen_on(event_base* base, bool sink) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    evconnlistener* l = evconnlistener_new_bind(base, on_accept, sink ? reinterpret_cast<void*>(1) : nullptr,
                                                LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
                                                reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    if (!l) throw std::runtime_error("cannot listen");
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    getsockname(evconnlistener_get_fd(l), reinterpret_cast<sockaddr*>(&bound), &len);
    return ntohs(bound.sin_port);
}

// The servers run in a child process so that they have their own descriptor budget: holding
// N idle tunnels needs N client sockets here and N accepted sockets there.
pid_t start_servers(Servers& s) {
    s.base = event_base_new();
    s.sink_port = listen_on(s.base, true);
    s.echo_port = listen_on(s.base, false);
    const pid_t child = fork();
    if (child == 0) {
        event_reinit(s.base);
        event_base_loop(s.base, EVLOOP_NO_EXIT_ON_EMPTY);
        _exit(0);
    }
    return child;
}

// ---- client side ----

struct Target {
    bool direct = true;
    std::string host;
    std::uint16_t port = 0;
};

Target parse_target(const std::string& text) {
    Target t;
    if (text == "direct") return t;
    t.direct = false;
    const auto colon = text.rfind(':');
    t.host = text.substr(0, colon);
    t.port = static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1)));
    return t;
}

int dial(const std::string& host, std::uint16_t port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &sin.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // A stalled peer must show up as a failure, not hang the benchmark.
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool read_exact(int fd, char* buf, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const ssize_t k = recv(fd, buf + got, n - got, 0);
        if (k <= 0) return false;
        got += static_cast<std::size_t>(k);
    }
    return true;
}

// Opens a connection to `port` on loopback, through the proxy unless direct. -1 on failure.
int open_to(const Target& t, std::uint16_t port, const std::string& auth) {
    if (t.direct) return dial("127.0.0.1", port);
    const int fd = dial(t.host, t.port);
    if (fd < 0) return -1;
    std::string head =
        "CONNECT 127.0.0.1:" + std::to_string(port) + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n";
    if (!auth.empty()) head += "Proxy-Authorization: Basic " + auth + "\r\n";
    head += "\r\n";
    if (send(fd, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
        close(fd);
        return -1;
    }
    // Read the reply head byte-wise up to the blank line (replies are tiny; no over-read).
    std::string reply;
    char c;
    while (reply.size() < 4096) {
        if (recv(fd, &c, 1, 0) != 1) break;
        reply += c;
        if (reply.size() >= 4 && reply.compare(reply.size() - 4, 4, "\r\n\r\n") == 0) break;
    }
    if (reply.rfind("HTTP/1.1 200", 0) != 0 && reply.rfind("HTTP/1.0 200", 0) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// One CONNECT with a wrong password from loopback source `source` (host order, 127.x.y.z);
// the reply is read and the connection closed. For the wrong-password flood while measuring.
void wrong_password_attempt(const Target& t, std::uint16_t port, std::uint32_t source, unsigned n) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(source);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(t.port);
    inet_pton(AF_INET, t.host.c_str(), &to.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0 &&
        connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
        // "guessN:wrong" in base64 changes with n, so no cache or per-user block short-cuts it.
        static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        std::string user = "g" + std::to_string(n) + ":wrong";
        while (user.size() % 3) user += 'x';
        std::string b64;
        for (std::size_t i = 0; i < user.size(); i += 3) {
            const unsigned v = (static_cast<unsigned char>(user[i]) << 16) |
                               (static_cast<unsigned char>(user[i + 1]) << 8) | static_cast<unsigned char>(user[i + 2]);
            for (int k = 3; k >= 0; --k) b64 += kAlphabet[(v >> (6 * k)) & 63];
        }
        const std::string head =
            "CONNECT 127.0.0.1:" + std::to_string(port) + " HTTP/1.1\r\nProxy-Authorization: Basic " + b64 + "\r\n\r\n";
        if (send(fd, head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size())) {
            char buf[512];
            while (recv(fd, buf, sizeof buf, 0) > 0) {
            }
        }
    }
    close(fd);
}

std::uint64_t parse_bytes(const std::string& s) {
    std::size_t i = 0;
    const std::uint64_t n = std::stoull(s, &i);
    const std::string unit = s.substr(i);
    if (unit == "GiB") return n << 30;
    if (unit == "MiB") return n << 20;
    if (unit == "KiB") return n << 10;
    return n;
}

long rss_kib(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

long total_rss_kib(const std::vector<int>& pids) {
    long sum = 0;
    for (int p : pids) sum += std::max(0L, rss_kib(p));
    return sum;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"proxy-bench: load client for CONNECT proxies (see scripts/bench.sh)"};
    std::string proxy = "direct", auth, bytes_text = "2GiB";
    int clients = 1, seconds = 5, tunnels = 2000, flooders = 0, flood_sources = 60000;
    std::vector<int> pids;
    std::string label;
    app.add_option("--proxy", proxy, "proxy host:port, or 'direct'");
    app.add_option("--auth", auth, "base64 user:password for Proxy-Authorization (optional)");
    app.add_option("--label", label, "name printed with the result");
    auto* tp = app.add_subcommand("throughput", "bulk bytes through one tunnel");
    tp->add_option("--bytes", bytes_text, "bytes to send (e.g. 4GiB)");
    auto* tn = app.add_subcommand("tunnels", "CONNECT, 64-byte echo, close, in a loop per client");
    tn->add_option("--clients", clients, "concurrent clients");
    tn->add_option("--seconds", seconds, "duration");
    tn->add_option("--flood", flooders,
                   "meanwhile, this many threads send wrong passwords from rotating 127.x.y.z sources");
    tn->add_option("--flood-sources", flood_sources,
                   "source addresses each flood thread rotates through (1: one attacking address per thread)")
        ->check(CLI::Range(1, 60000));
    auto* idle = app.add_subcommand("idle", "open N tunnels and report the proxy's RSS per tunnel");
    idle->add_option("--tunnels", tunnels, "tunnels to hold open");
    idle->add_option("--pid", pids, "proxy process id(s) whose RSS is summed")->required();
    app.require_subcommand(1);
    CLI11_PARSE(app, argc, argv);

    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    Servers servers;
    const pid_t server_pid = start_servers(servers);
    if (server_pid < 0) {
        std::perror("fork");
        return 1;
    }
    const Target target = parse_target(proxy);
    if (label.empty()) label = proxy;

    if (tp->parsed()) {
        const std::uint64_t total = parse_bytes(bytes_text);
        const int fd = open_to(target, servers.sink_port, auth);
        if (fd < 0) {
            std::fprintf(stderr, "cannot open tunnel\n");
            return 1;
        }
        std::vector<char> buf(1 << 20, 'x');
        const auto start = Clock::now();
        std::uint64_t sent = 0;
        while (sent < total) {
            const ssize_t k = send(fd, buf.data(), std::min<std::uint64_t>(buf.size(), total - sent), MSG_NOSIGNAL);
            if (k <= 0) break;
            sent += static_cast<std::uint64_t>(k);
        }
        shutdown(fd, SHUT_WR);
        char c;
        while (recv(fd, &c, 1, 0) > 0) {
        }
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        close(fd);
        std::printf("{\"mode\":\"throughput\",\"label\":\"%s\",\"bytes\":%llu,\"seconds\":%.3f,\"mb_per_s\":%.1f}\n",
                    label.c_str(), static_cast<unsigned long long>(sent), secs, sent / secs / 1e6);
    } else if (tn->parsed()) {
        std::atomic<bool> stop{false};
        std::atomic<std::uint64_t> failures{0};
        std::vector<std::vector<double>> latencies(static_cast<std::size_t>(clients));
        std::vector<std::thread> threads;
        std::atomic<std::uint64_t> flood_attempts{0};
        for (int f = 0; f < flooders && !target.direct; ++f) {
            threads.emplace_back([&, f] {
                for (unsigned n = 0; !stop.load(std::memory_order_relaxed); ++n) {
                    const std::uint32_t source = (127u << 24) | (static_cast<std::uint32_t>(10 + f) << 16) |
                                                 (1 + n % static_cast<unsigned>(flood_sources));
                    wrong_password_attempt(target, servers.echo_port, source, n * 64 + static_cast<unsigned>(f));
                    flood_attempts++;
                }
            });
        }
        if (flooders > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the flood build up
        const auto start = Clock::now();
        for (int i = 0; i < clients; ++i) {
            threads.emplace_back([&, i] {
                char payload[64];
                std::memset(payload, 'p', sizeof payload);
                char back[64];
                auto& lat = latencies[static_cast<std::size_t>(i)];
                while (!stop.load(std::memory_order_relaxed)) {
                    const auto t0 = Clock::now();
                    const int fd = open_to(target, servers.echo_port, auth);
                    if (fd < 0) {
                        failures++;
                        std::this_thread::sleep_for(std::chrono::milliseconds(1));
                        continue;
                    }
                    const bool ok = send(fd, payload, sizeof payload, MSG_NOSIGNAL) == sizeof payload &&
                                    read_exact(fd, back, sizeof back);
                    close(fd);
                    if (!ok) {
                        failures++;
                        continue;
                    }
                    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
                }
            });
        }
        std::this_thread::sleep_for(std::chrono::seconds(seconds));
        stop = true;
        for (auto& t : threads) t.join();
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        std::vector<double> all;
        for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
        std::sort(all.begin(), all.end());
        auto pct = [&](double p) {
            return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<std::size_t>(p * all.size()))];
        };
        std::printf(
            "{\"mode\":\"tunnels\",\"label\":\"%s\",\"clients\":%d,\"flood_threads\":%d,\"flood_sources\":%d,\"flood_"
            "attempts\":%llu,"
            "\"tunnels\":%zu,\"failures\":%llu,\"per_second\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
            label.c_str(), clients, flooders, flood_sources, static_cast<unsigned long long>(flood_attempts.load()),
            all.size(), static_cast<unsigned long long>(failures.load()), all.size() / secs, pct(0.50), pct(0.99));
    } else if (idle->parsed()) {
        // Warm up with a few tunnels so that thread stacks and arenas exist before the baseline.
        for (int i = 0; i < 16; ++i) {
            const int fd = open_to(target, servers.echo_port, auth);
            if (fd >= 0) close(fd);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        const long before = total_rss_kib(pids);
        std::vector<int> fds;
        char payload[64];
        std::memset(payload, 'i', sizeof payload);
        char back[64];
        for (int i = 0; i < tunnels; ++i) {
            const int fd = open_to(target, servers.echo_port, auth);
            if (fd < 0) break;
            // One round trip, so the tunnel has carried data like a real idle connection.
            if (send(fd, payload, sizeof payload, MSG_NOSIGNAL) != sizeof payload ||
                !read_exact(fd, back, sizeof back)) {
                close(fd);
                break;
            }
            fds.push_back(fd);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        const long after = total_rss_kib(pids);
        std::printf(
            "{\"mode\":\"idle\",\"label\":\"%s\",\"tunnels\":%zu,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,"
            "\"kib_per_tunnel\":%.2f}\n",
            label.c_str(), fds.size(), before, after,
            fds.empty() ? 0.0 : static_cast<double>(after - before) / static_cast<double>(fds.size()));
        for (int fd : fds) close(fd);
    }
    std::fflush(stdout);
    kill(server_pid, SIGTERM);
    waitpid(server_pid, nullptr, 0);
    return 0;
}
