// reference-relay: the least a CONNECT proxy can do, as a yardstick for dingbridge-proxy's relay.
// Loopback only (listens on 127.0.0.1, connects only to 127.0.0.0/8). Not a proxy to use: no
// limits, no authentication, no timeouts, a thread per direction of each tunnel.
//
//   reference-relay PORT splice|splice2|copy
//
//   splice   one blocking thread per direction: socket → pipe → socket with splice(2)
//   splice2  two threads per direction sharing its pipe: one fills it from the sender while the
//            other empties it into the receiver, so the two halves of the relay overlap
//   copy     one blocking thread per direction: recv(2) into 1 MiB, send(2) it on
//
// What it answers: with no event loop, no bookkeeping and a thread always ready on each side, how
// near to a direct connection can a relay on this host get? (docs/BENCHMARKS.md)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

enum class Mode { splice, splice2, copy };
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
        std::fprintf(stderr, "usage: reference-relay PORT splice|splice2|copy\n");
        return 2;
    }
    const std::string m = argv[2];
    if (m == "splice") {
        mode = Mode::splice;
    } else if (m == "splice2") {
        mode = Mode::splice2;
    } else if (m == "copy") {
        mode = Mode::copy;
    } else {
        std::fprintf(stderr, "reference-relay: unknown mode '%s' (splice, splice2 or copy)\n", argv[2]);
        return 2;
    }
    const int port = std::atoi(argv[1]);
    if (port <= 0 || port > 65535) {
        std::fprintf(stderr, "reference-relay: '%s' is not a port (1-65535)\n", argv[1]);
        return 2;
    }
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
        if (client < 0) continue;
        try {
            std::thread(tunnel, client).detach();
        } catch (const std::system_error&) {
            close(client);  // out of threads
        }
    }
}
