// reference-relay: the least a CONNECT proxy can do, as a yardstick for dingbridge-proxy's relay.
// Loopback only (listens on 127.0.0.1, connects only to 127.0.0.0/8). Not a proxy to use: no
// limits, no authentication, no timeouts, a thread per direction of each tunnel.
//
//   reference-relay PORT splice|splice2|copy|sockmap
//
//   splice   one blocking thread per direction: socket → pipe → socket with splice(2)
//   splice2  two threads per direction sharing its pipe: one fills it from the sender while the
//            other empties it into the receiver, so the two halves of the relay overlap
//   copy     one blocking thread per direction: recv(2) into 1 MiB, send(2) it on
//   sockmap  no relay in user space at all: an eBPF sk_skb verdict program redirects each segment
//            received on one socket of the tunnel to the other socket's send side (sockmap, as
//            Cilium's socket-level proxy acceleration does); one thread per tunnel only waits for
//            the end. Needs CAP_BPF and CAP_NET_ADMIN (root). A bench mode only: the end of a
//            tunnel closes both sockets at once, without waiting for data still queued in the
//            kernel, which the harness's transfers (acknowledged by the sink) never depend on.
//
// What it answers: with no event loop, no bookkeeping and a thread always ready on each side, how
// near to a direct connection can a relay on this host get? (docs/BENCHMARKS.md)
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

enum class Mode { splice, splice2, copy, sockmap };
Mode mode = Mode::splice;
constexpr int kPipeSize = 256 * 1024;  // as dingbridge-proxy's StagePool::kPipeSize
constexpr std::size_t kChunk = 1 << 20;

struct Direction {
    int from = -1;
    int to = -1;
    int pipe_fds[2] = {-1, -1};
};

void wait_for(int fd, short events) {
    pollfd p{fd, events, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

// splice: blocking, both halves on one thread.
void relay_splice(Direction& d) {
    for (;;) {
        ssize_t n = splice(d.from, nullptr, d.pipe_fds[1], nullptr, kChunk, SPLICE_F_MOVE);
        if (n <= 0) break;
        while (n > 0) {
            const ssize_t m = splice(d.pipe_fds[0], nullptr, d.to, nullptr, static_cast<std::size_t>(n), SPLICE_F_MOVE);
            if (m <= 0) return;
            n -= m;
        }
    }
    shutdown(d.to, SHUT_WR);
}

// splice2: everything non-blocking (a blocking splice into a pipe holds the pipe's lock while it
// waits for the socket, which would stall the other half), each half waits with poll(2).
void fill(Direction& d) {
    for (;;) {
        const ssize_t n = splice(d.from, nullptr, d.pipe_fds[1], nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == 0) break;
        if (n < 0) {
            if (errno != EAGAIN) break;
            pollfd p[2] = {{d.from, POLLIN, 0}, {d.pipe_fds[1], POLLOUT, 0}};
            poll(p, 2, -1);
            if (p[0].revents == 0) wait_for(d.from, POLLIN);
            if (p[1].revents == 0) wait_for(d.pipe_fds[1], POLLOUT);
        }
    }
    close(d.pipe_fds[1]);  // the emptying half sees the end once the pipe is drained
    d.pipe_fds[1] = -1;
}

void empty(Direction& d) {
    for (;;) {
        const ssize_t n = splice(d.pipe_fds[0], nullptr, d.to, nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == 0) break;
        if (n < 0) {
            if (errno != EAGAIN) return;
            pollfd p[2] = {{d.pipe_fds[0], POLLIN, 0}, {d.to, POLLOUT, 0}};
            poll(p, 2, -1);
            if (p[0].revents == 0) wait_for(d.pipe_fds[0], POLLIN);
            if (p[1].revents == 0) wait_for(d.to, POLLOUT);
        }
    }
    shutdown(d.to, SHUT_WR);
}

void relay_copy(Direction& d) {
    std::unique_ptr<char[]> buffer(new char[kChunk]);
    for (;;) {
        ssize_t n = recv(d.from, buffer.get(), kChunk, 0);
        if (n <= 0) break;
        const char* p = buffer.get();
        while (n > 0) {
            const ssize_t m = send(d.to, p, static_cast<std::size_t>(n), MSG_NOSIGNAL);
            if (m <= 0) return;
            n -= m;
            p += m;
        }
    }
    shutdown(d.to, SHUT_WR);
}

void reply(int fd, const char* status) {
    const std::string line = std::string("HTTP/1.1 ") + status + "\r\n\r\n";
    (void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL);
}

// sockmap: the sockets of every tunnel in one BPF_MAP_TYPE_SOCKHASH, each stored under the
// 4-tuple of its peer socket as the kernel sees it from the receiving side, so the verdict program
// finds the socket to redirect to by the receiving socket's own tuple.
struct TupleKey {
    std::uint32_t remote_ip4;   // network order, as __sk_buff.remote_ip4
    std::uint32_t local_ip4;    // network order
    std::uint32_t remote_port;  // the 16-bit network-order port, zero-extended
    std::uint32_t local_port;   // host order, as __sk_buff.local_port
};
int sock_hash = -1;

long bpf(int command, bpf_attr& attr) { return syscall(SYS_bpf, command, &attr, sizeof attr); }

bpf_insn instruction(std::uint8_t code, std::uint8_t dst, std::uint8_t src, std::int16_t off, std::int32_t imm) {
    bpf_insn i{};
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

[[noreturn]] void bpf_failed(const char* what) {
    std::fprintf(stderr,
                 "reference-relay: sockmap: %s failed: %s (needs CAP_BPF and CAP_NET_ADMIN, and a kernel with "
                 "CONFIG_BPF_STREAM_PARSER)\n",
                 what, std::strerror(errno));
    std::exit(1);
}

// The verdict program, assembled here so the yardstick needs no BPF toolchain:
//   key = {skb->remote_ip4, skb->local_ip4, skb->remote_port, skb->local_port};
//   return bpf_sk_redirect_hash(skb, &sock_hash, &key, 0);   // 0 = the peer socket's send side
void setup_sockmap() {
    bpf_attr map{};
    map.map_type = BPF_MAP_TYPE_SOCKHASH;
    map.key_size = sizeof(TupleKey);
    map.value_size = sizeof(std::uint32_t);
    map.max_entries = 65536;
    sock_hash = static_cast<int>(bpf(BPF_MAP_CREATE, map));
    if (sock_hash < 0) bpf_failed("creating the socket map");

    std::vector<bpf_insn> program;
    program.push_back(instruction(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0));  // r6 = skb
    const std::int16_t fields[4] = {offsetof(__sk_buff, remote_ip4), offsetof(__sk_buff, local_ip4),
                                    offsetof(__sk_buff, remote_port), offsetof(__sk_buff, local_port)};
    for (int k = 0; k < 4; ++k) {
        program.push_back(instruction(BPF_LDX | BPF_MEM | BPF_W, 2, 6, fields[k], 0));  // r2 = field
        if (k == 2) {
            // On little-endian hosts the kernel hands remote_port shifted left by 16; undo that
            // (a port, zero-extended, is never above 0xffff).
            program.push_back(instruction(BPF_JMP | BPF_JLE | BPF_K, 2, 0, 1, 0xffff));
            program.push_back(instruction(BPF_ALU64 | BPF_RSH | BPF_K, 2, 0, 0, 16));
        }
        program.push_back(instruction(BPF_STX | BPF_MEM | BPF_W, 10, 2, static_cast<std::int16_t>(-16 + 4 * k), 0));
    }
    program.push_back(instruction(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0));                        // r1 = skb
    program.push_back(instruction(BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, sock_hash));  // r2 = map
    program.push_back(instruction(0, 0, 0, 0, 0));
    program.push_back(instruction(BPF_ALU64 | BPF_MOV | BPF_X, 3, 10, 0, 0));  // r3 = &key
    program.push_back(instruction(BPF_ALU64 | BPF_ADD | BPF_K, 3, 0, 0, -16));
    program.push_back(instruction(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0));  // r4 = flags
    program.push_back(instruction(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_hash));
    program.push_back(instruction(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));

    static char verifier_log[16384];
    static const char license[] = "GPL";  // sk_redirect_hash is a GPL-only helper
    bpf_attr load{};
    load.prog_type = BPF_PROG_TYPE_SK_SKB;
    load.insn_cnt = static_cast<std::uint32_t>(program.size());
    load.insns = reinterpret_cast<std::uint64_t>(program.data());
    load.license = reinterpret_cast<std::uint64_t>(license);
    load.log_buf = reinterpret_cast<std::uint64_t>(verifier_log);
    load.log_size = sizeof verifier_log;
    load.log_level = 1;
    const int prog = static_cast<int>(bpf(BPF_PROG_LOAD, load));
    if (prog < 0) {
        std::fprintf(stderr, "%s\n", verifier_log);
        bpf_failed("loading the verdict program");
    }
    bpf_attr attach{};
    attach.target_fd = static_cast<std::uint32_t>(sock_hash);
    attach.attach_bpf_fd = static_cast<std::uint32_t>(prog);
    attach.attach_type = BPF_SK_SKB_VERDICT;
    if (bpf(BPF_PROG_ATTACH, attach) != 0) bpf_failed("attaching the verdict program");
}

TupleKey tuple_of(int fd) {
    sockaddr_in local{};
    sockaddr_in remote{};
    socklen_t n = sizeof local;
    getsockname(fd, reinterpret_cast<sockaddr*>(&local), &n);
    n = sizeof remote;
    getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &n);
    return TupleKey{remote.sin_addr.s_addr, local.sin_addr.s_addr, remote.sin_port, ntohs(local.sin_port)};
}

bool store(const TupleKey& key, int fd) {
    const std::uint32_t value = static_cast<std::uint32_t>(fd);
    bpf_attr update{};
    update.map_fd = static_cast<std::uint32_t>(sock_hash);
    update.key = reinterpret_cast<std::uint64_t>(&key);
    update.value = reinterpret_cast<std::uint64_t>(&value);
    update.flags = BPF_ANY;
    return bpf(BPF_MAP_UPDATE_ELEM, update) == 0;
}

// Both redirections are in place before the 200 goes out, so no byte a client sends after it
// can arrive ahead of them. The kernel relays both directions from here; closing a socket removes
// it from the map.
void relay_sockmap(int client, int upstream) {
    if (!store(tuple_of(client), upstream) || !store(tuple_of(upstream), client)) {
        reply(client, "503 Service Unavailable");  // the map is full, or a side closed already
        return;
    }
    reply(client, "200 Connection established");
    pollfd ends[2] = {{client, POLLRDHUP, 0}, {upstream, POLLRDHUP, 0}};
    while (poll(ends, 2, -1) < 0 && errno == EINTR) {
    }
}

void tunnel(int client) {
    // The head, one byte at a time, so nothing after it is read here (it belongs to the tunnel).
    std::string head;
    char c;
    while (head.size() < 8192 && (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0)) {
        if (recv(client, &c, 1, 0) != 1) {
            close(client);
            return;
        }
        head.push_back(c);
    }
    if (head.size() < 4 || head.compare(head.size() - 4, 4, "\r\n\r\n") != 0) {
        reply(client, "431 Request Header Fields Too Large");  // 8 KiB and no end of head
        close(client);
        return;
    }
    char host[64] = {};
    unsigned port = 0;
    sockaddr_in target{};
    target.sin_family = AF_INET;
    if (std::sscanf(head.c_str(), "CONNECT %63[0-9.]:%u ", host, &port) != 2 || port == 0 || port > 65535 ||
        inet_pton(AF_INET, host, &target.sin_addr) != 1 || (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
        reply(client, "403 Forbidden");  // loopback only
        close(client);
        return;
    }
    target.sin_port = htons(static_cast<std::uint16_t>(port));
    const int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (upstream < 0 || connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
        reply(client, "502 Bad Gateway");
        if (upstream >= 0) close(upstream);
        close(client);
        return;
    }
    Direction up{client, upstream};
    Direction down{upstream, client};
    const auto close_all = [&] {
        for (Direction* d : {&up, &down})
            for (int fd : d->pipe_fds)
                if (fd >= 0) close(fd);
        close(upstream);
        close(client);
    };
    if (mode == Mode::sockmap) {
        relay_sockmap(client, upstream);
        close_all();
        return;
    }
    if (mode != Mode::copy) {
        for (Direction* d : {&up, &down}) {
            if (pipe2(d->pipe_fds, O_CLOEXEC | (mode == Mode::splice2 ? O_NONBLOCK : 0)) != 0) {
                // Out of descriptors (the harness's idle runs hold thousands of tunnels, and
                // thousands of threads): this tunnel is refused, the relay goes on.
                reply(client, "503 Service Unavailable");
                close_all();
                return;
            }
            fcntl(d->pipe_fds[1], F_SETPIPE_SZ, kPipeSize);
        }
    }
    reply(client, "200 Connection established");
    std::vector<std::thread> threads;
    try {
        if (mode == Mode::copy) {
            threads.emplace_back(relay_copy, std::ref(up));
            relay_copy(down);
        } else if (mode == Mode::splice) {
            threads.emplace_back(relay_splice, std::ref(up));
            relay_splice(down);
        } else {
            for (int fd : {client, upstream}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            threads.emplace_back(fill, std::ref(up));
            threads.emplace_back(empty, std::ref(up));
            threads.emplace_back(fill, std::ref(down));
            empty(down);
        }
    } catch (const std::system_error&) {  // out of threads: end the tunnel, and the threads it has
        shutdown(client, SHUT_RDWR);
        shutdown(upstream, SHUT_RDWR);
    }
    for (std::thread& t : threads) t.join();
    close_all();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: reference-relay PORT splice|splice2|copy|sockmap\n");
        return 2;
    }
    const std::string m = argv[2];
    if (m == "splice") {
        mode = Mode::splice;
    } else if (m == "splice2") {
        mode = Mode::splice2;
    } else if (m == "sockmap") {
        mode = Mode::sockmap;
    } else if (m == "copy") {
        mode = Mode::copy;
    } else {
        std::fprintf(stderr, "reference-relay: unknown mode '%s' (splice, splice2, copy or sockmap)\n", argv[2]);
        return 2;
    }
    char* end = nullptr;
    errno = 0;
    const long port = std::strtol(argv[1], &end, 10);
    if (errno != 0 || end == argv[1] || *end != '\0' || port <= 0 || port > 65535) {
        std::fprintf(stderr, "reference-relay: '%s' is not a port (1-65535)\n", argv[1]);
        return 2;
    }
    if (mode == Mode::sockmap) setup_sockmap();
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || listen(listener, 4096) != 0) {
        std::perror("reference-relay: listen");
        return 1;
    }
    for (;;) {
        const int client = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) {
            // Out of descriptors the pending connection stays queued: wait instead of spinning.
            if (errno == EMFILE || errno == ENFILE) usleep(10 * 1000);
            continue;
        }
        try {
            std::thread(tunnel, client).detach();
        } catch (const std::system_error&) {
            close(client);  // out of threads
        }
    }
}
