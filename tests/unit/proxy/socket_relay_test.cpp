#include "proxy/socket_relay.h"

#include <arpa/inet.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "proxy/send_offload.h"

using namespace dingbridge::proxy;

namespace {

// A connected pair of loopback TCP sockets: {one end, the other end}. `receive_buffer`: the
// other end's SO_RCVBUF, set before the handshake so that its window can use it.
std::pair<int, int> tcp_pair(int receive_buffer = 0) {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    BOOST_REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    BOOST_REQUIRE(listen(listener, 1) == 0);
    BOOST_REQUIRE(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const int one = socket(AF_INET, SOCK_STREAM, 0);
    BOOST_REQUIRE(connect(one, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const int other = accept(listener, nullptr, nullptr);
    BOOST_REQUIRE(other >= 0);
    close(listener);
    return {one, other};
}

struct Recorder : Relay::Listener {
    std::size_t up = 0, down = 0;
    bool finished = false;
    CloseReason reason{};
    void relay_progress(bool upstream_bound, std::size_t bytes) override { (upstream_bound ? up : down) += bytes; }
    void relay_finished(CloseReason r) override {
        finished = true;
        reason = r;
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    return s;
}

// What a worker gives its relays: an event loop, a stage pool and, for the copy relay, a send
// thread (`send_thread`) with its counters.
struct Rig {
    event_base* base = nullptr;
    StagePool pool;
    Recorder rec;
    std::atomic<std::uint64_t> thread_bytes{0};
    std::atomic<std::size_t> bulk_directions{0};
    std::unique_ptr<SendOffload> offload;

    explicit Rig(bool send_thread) {
        if (send_thread) evthread_use_pthreads();  // the thread wakes the loop, as in the proxy
        base = event_base_new();
        if (send_thread) offload = std::make_unique<SendOffload>(base, pool, thread_bytes, bulk_directions);
    }
    ~Rig() {
        offload.reset();
        event_base_free(base);
    }
    Rig(const Rig&) = delete;
    Rig& operator=(const Rig&) = delete;
    std::unique_ptr<SocketRelay> relay(StageKind stages, int client_side, int upstream_side) {
        for (int fd : {client_side, upstream_side}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        return std::make_unique<SocketRelay>(base, pool, stages, client_side, upstream_side, rec, offload.get());
    }
};

// Client writes `up` and half-closes; the upstream answers `down` after reading it all, then
// half-closes. Both ends read slowly at first, so both directions back up in the relay.
// `send_thread`: the copy relay hands bulk sends to a SendOffload (as the proxy's workers do).
// `max_pipes`: pipes the pool may lend at once.
void relay_both_ways(StageKind stages, bool send_thread = false, std::size_t max_pipes = SIZE_MAX) {
    auto [client, client_side] = tcp_pair();
    auto [upstream_side, upstream] = tcp_pair();
    Rig rig(send_thread);
    rig.pool.set_max_pipes_lent(max_pipes);
    event_base* base = rig.base;
    Recorder& rec = rig.rec;
    auto relay = rig.relay(stages, client_side, upstream_side);
    std::size_t most_pipes_lent = 0;
    BOOST_REQUIRE(relay->start());

    const std::string up = pattern(5 * 1024 * 1024 + 17), down = pattern(3 * 1024 * 1024 + 5);
    std::string got_up, got_down;
    std::thread client_thread([&, client = client] {
        std::thread writer([&] {
            for (std::size_t off = 0; off < up.size();)
                off += static_cast<std::size_t>(send(client, up.data() + off, up.size() - off, 0));
            shutdown(client, SHUT_WR);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        char buf[65536];
        for (ssize_t n; (n = recv(client, buf, sizeof buf, 0)) > 0;) got_down.append(buf, static_cast<std::size_t>(n));
        writer.join();
    });
    std::thread upstream_thread([&, upstream = upstream] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the upload back up
        char buf[65536];
        for (ssize_t n; (n = recv(upstream, buf, sizeof buf, 0)) > 0;) got_up.append(buf, static_cast<std::size_t>(n));
        for (std::size_t off = 0; off < down.size();)
            off += static_cast<std::size_t>(send(upstream, down.data() + off, down.size() - off, 0));
        shutdown(upstream, SHUT_WR);
    });
    while (!rec.finished) {
        event_base_loop(base, EVLOOP_ONCE);
        most_pipes_lent = std::max(most_pipes_lent, rig.pool.pipes_lent());
    }
    client_thread.join();
    upstream_thread.join();

    BOOST_TEST((rec.reason == CloseReason::completed));
    BOOST_TEST(got_up.size() == up.size());
    BOOST_TEST((got_up == up));  // every byte, in order
    BOOST_TEST(got_down.size() == down.size());
    BOOST_TEST((got_down == down));
    BOOST_TEST(rec.up == up.size());
    BOOST_TEST(rec.down == down.size());
    BOOST_TEST(relay->queued() == 0u);
    BOOST_TEST(rig.pool.large_buffers_in_use() == 0u);  // both stages went back to the pool
    BOOST_TEST(rig.pool.pipes_lent() == 0u);
    // Pipes: always with splice, for the bulk bytes with auto (within the allowance), never with copy.
    if (stages == StageKind::buffer || max_pipes == 0) BOOST_TEST(most_pipes_lent == 0u);
    if (stages != StageKind::buffer && max_pipes > 0) BOOST_TEST(most_pipes_lent > 0u);
    BOOST_TEST(most_pipes_lent <= std::min<std::size_t>(2, max_pipes));
    if (send_thread && stages != StageKind::buffer) BOOST_TEST(rig.thread_bytes.load() == 0u);  // copy's only
    if (send_thread && stages == StageKind::buffer) {
        // The upload backed up alone (the answer starts after it): the thread sent some of it.
        BOOST_TEST(rig.thread_bytes.load() > 0u);
        BOOST_TEST(rig.thread_bytes.load() <= up.size() + down.size());
    }
    relay.reset();
    BOOST_TEST(rig.bulk_directions.load() == 0u);  // a stopped relay counts no bulk direction
    close(client);
    close(upstream);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(socket_relay)

BOOST_AUTO_TEST_CASE(copy_relay_moves_every_byte_both_ways_and_forwards_half_closes) {
    relay_both_ways(StageKind::buffer);
}

BOOST_AUTO_TEST_CASE(splice_relay_moves_every_byte_both_ways_and_forwards_half_closes) {
    relay_both_ways(StageKind::pipe);
}

BOOST_AUTO_TEST_CASE(copy_relay_with_a_send_thread_moves_every_byte_both_ways_in_order) {
    relay_both_ways(StageKind::buffer, true);
}

// auto: bulk bytes through pipes (the send thread is not used even when given), small ones and
// those beyond the pipe allowance through buffers; in order either way, and nothing kept lent.
BOOST_AUTO_TEST_CASE(auto_relay_moves_every_byte_both_ways_through_buffers_and_pipes) {
    relay_both_ways(StageKind::pipe_when_bulk, true);
}

BOOST_AUTO_TEST_CASE(auto_relay_copies_once_the_worker_has_no_pipe_to_lend) {
    relay_both_ways(StageKind::pipe_when_bulk, false, 1);
    relay_both_ways(StageKind::pipe_when_bulk, false, 0);
}

// A direction that moved bulk bytes and then went quiet must stop counting as a bulk transfer:
// while it counts, no other tunnel is "alone in bulk", and every other bulk transfer in the
// process loses the send thread for as long as the quiet tunnel stays open.
BOOST_AUTO_TEST_CASE(a_bulk_direction_that_goes_quiet_stops_counting_as_bulk) {
    auto [client, client_side] = tcp_pair(256 * 1024);  // room for a whole burst (below)
    auto [upstream_side, upstream] = tcp_pair();
    Rig rig(true);
    auto relay = rig.relay(StageKind::buffer, client_side, upstream_side);
    BOOST_REQUIRE(relay->start());  // it reads once the loop runs
    // 96 KiB, all queued before the relay reads: its one receive is a bulk one (>= kOffloadMin,
    // and not the trickle that ends a bulk transfer), and the tunnel then stays open with
    // nothing more to send.
    const std::string burst = pattern(96 * 1024);
    const auto relay_burst = [&, client = client, upstream = upstream] {
        BOOST_REQUIRE(send(client, burst.data(), burst.size(), 0) == static_cast<ssize_t>(burst.size()));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::string got;
        char buf[65536];
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        // Until the upstream has it all and the send thread's report is collected (nothing queued).
        while (got.size() < burst.size() || relay->queued() != 0) {
            BOOST_REQUIRE(std::chrono::steady_clock::now() < deadline);
            event_base_loop(rig.base, EVLOOP_NONBLOCK);
            const ssize_t n = recv(upstream, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        }
        BOOST_TEST((got == burst));
    };
    relay_burst();
    BOOST_TEST(rig.bulk_directions.load() == 1u);  // it was a bulk transfer

    relay->tick();  // the tunnel's timer: this direction received since the last tick
    BOOST_TEST(rig.bulk_directions.load() == 1u);
    relay->tick();  // nothing received for a whole interval: quiet, no longer bulk
    BOOST_TEST(rig.bulk_directions.load() == 0u);
    BOOST_TEST(!rig.rec.finished);  // still open

    relay_burst();  // bulk again when it moves bulk bytes again
    BOOST_TEST(rig.bulk_directions.load() == 1u);

    relay.reset();
    BOOST_TEST(rig.bulk_directions.load() == 0u);
    close(client);
    close(upstream);
}

BOOST_AUTO_TEST_CASE(copy_buffers_are_large_for_a_few_tunnels_and_small_beyond) {
    StagePool pool;
    std::vector<Stage> lent;
    for (std::size_t i = 0; i < StagePool::kLargeBuffersInUse + 3; ++i) {
        lent.push_back(pool.take(false));
        BOOST_REQUIRE(lent.back().held());
        BOOST_TEST(!lent.back().is_pipe());
    }
    // Many stalled receivers at once: the memory they hold is bounded by small buffers.
    for (std::size_t i = 0; i < lent.size(); ++i) {
        BOOST_TEST(lent[i].capacity ==
                   (i < StagePool::kLargeBuffersInUse ? StagePool::kLargeBuffer : StagePool::kSmallBuffer));
    }
    BOOST_TEST(pool.large_buffers_in_use() == StagePool::kLargeBuffersInUse);
    pool.discard(lent[0]);  // one with bytes still in it: freed, and its place is free again
    BOOST_TEST(pool.large_buffers_in_use() == StagePool::kLargeBuffersInUse - 1);
    lent[0] = pool.take(false);
    BOOST_TEST(lent[0].capacity == StagePool::kLargeBuffer);
    for (const Stage& s : lent) pool.give(s);
    BOOST_TEST(pool.large_buffers_in_use() == 0u);
}

// auto: a download whose client stopped reading held its pipe for as long as the tunnel stayed
// open, so 32 stalled downloads kept every other transfer of the worker on buffers. While another
// bulk direction is refused a pipe, one whose receiver took nothing for a whole tick() interval
// now gives it back; its bytes wait in a buffer (counted against StagePool::kReleasedMax).
BOOST_AUTO_TEST_CASE(auto_relay_gives_back_the_pipe_of_a_stalled_receiver) {
    auto [client_side, client] = tcp_pair(64 * 1024);  // small socket buffers toward the client
    const int small = 64 * 1024;
    setsockopt(client_side, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    auto [upstream_side, upstream] = tcp_pair();
    Rig rig(false);
    auto relay = rig.relay(StageKind::pipe_when_bulk, client_side, upstream_side);
    BOOST_REQUIRE(relay->start());
    const std::string down = pattern(100 * 1024 + 6 * 1024 * 1024);
    const auto run_until = [&](auto done) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!done()) {
            BOOST_REQUIRE_MESSAGE(
                std::chrono::steady_clock::now() < deadline,
                "down " << rig.rec.down << " lent " << rig.pool.pipes_lent() << " queued " << relay->queued());
            event_base_loop(rig.base, EVLOOP_NONBLOCK);
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    };
    // A bulk first receive (through a buffer), relayed whole; then more than the client's socket
    // takes, which the next stage, a pipe, holds for a client that does not read.
    BOOST_REQUIRE(send(upstream, down.data(), 100 * 1024, 0) == 100 * 1024);
    run_until([&] { return rig.rec.down == 100 * 1024; });
    std::thread writer([&, upstream = upstream] {
        for (std::size_t off = 100 * 1024; off < down.size();)
            off += static_cast<std::size_t>(send(upstream, down.data() + off, down.size() - off, 0));
        shutdown(upstream, SHUT_WR);
    });
    run_until([&] { return rig.pool.pipes_lent() == 1 && relay->queued() > 0; });
    for (int i = 0; i < 20; ++i) event_base_loop(rig.base, EVLOOP_NONBLOCK);  // stalled: no change
    BOOST_TEST(rig.pool.pipes_lent() == 1u);

    relay->tick();  // the receiver took bytes in this interval (before it stalled)
    relay->tick();  // nothing in a whole interval, but no other direction wants a pipe: kept
    BOOST_TEST(rig.pool.pipes_lent() == 1u);
    rig.pool.set_max_pipes_lent(1);
    BOOST_TEST(!rig.pool.lend_pipe().held());  // another bulk direction is refused one...
    relay->tick();                             // ...so the stalled one gives its pipe back
    BOOST_TEST(rig.pool.pipes_lent() == 0u);
    BOOST_TEST(rig.pool.released_bytes() > 0u);  // its bytes wait in a counted buffer
    BOOST_TEST(rig.pool.released_bytes() <= StagePool::kPipeSize);
    BOOST_TEST(!rig.rec.finished);

    std::string got;
    char buf[65536];
    run_until([&] {
        const ssize_t n = recv(client, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        return n == 0;  // the upstream's FIN, passed on after the last byte
    });
    writer.join();
    BOOST_TEST(!rig.rec.finished);  // the client's side is still open
    BOOST_TEST(rig.rec.down == down.size());
    BOOST_TEST(got.size() == down.size());
    BOOST_TEST((got == down));  // every byte, in order, across the pipe given back
    BOOST_TEST(rig.pool.pipes_lent() == 0u);
    BOOST_TEST(rig.pool.released_bytes() == 0u);  // the buffer went back once drained
    relay.reset();
    close(client);
    close(upstream);
}

BOOST_AUTO_TEST_CASE(pipes_come_from_the_pool_and_go_back_empty) {
    StagePool pool(1);
    Stage a = pool.take(true), b = pool.take(true);
    BOOST_REQUIRE(a.held());
    BOOST_REQUIRE(b.held());
    BOOST_TEST(a.is_pipe());
    BOOST_TEST(a.capacity >= 64u * 1024u);
    const int kept_fd = a.read_fd;
    pool.give(a);
    pool.give(b);  // beyond `keep`: closed
    BOOST_TEST(fcntl(b.read_fd, F_GETFD) == -1);
    Stage again = pool.take(true);
    BOOST_TEST(again.read_fd == kept_fd);
    BOOST_TEST(pool.pipes_lent() == 1u);
    pool.set_max_pipes_lent(1);  // the auto relay's allowance: none beyond it...
    BOOST_TEST(!pool.lend_pipe().held());
    Stage spliced = pool.take(true);  // ...while relay: splice still gets its pipes (a reload to auto
    BOOST_TEST(spliced.held());       // once killed busy splice tunnels with "cannot create pipe")
    pool.give(spliced);
    pool.give(again);
    Stage lent = pool.lend_pipe();
    BOOST_TEST(lent.held());
    pool.give(lent);
    // Releasing a stalled pipe: only after a refusal (above), within kReleasedMax.
    BOOST_TEST(pool.may_release(StagePool::kPipeSize));
    pool.count_released(StagePool::kReleasedMax - 1024, true);
    BOOST_TEST(pool.may_release(1024));
    BOOST_TEST(!pool.may_release(1025));
    pool.count_released(StagePool::kReleasedMax - 1024, false);
    BOOST_TEST(!StagePool(1).may_release(1));  // no refusal yet
    BOOST_TEST(pool.pipes_lent() == 0u);
    Stage last = pool.take(true);
    BOOST_TEST(last.held());
    pool.discard(last);  // with bytes in it: closed, and no longer lent
    BOOST_TEST(pool.pipes_lent() == 0u);
    Stage spare = pool.take(true);
    pool.give(spare);  // kept (keep 1)
    BOOST_TEST(fcntl(spare.read_fd, F_GETFD) != -1);
    pool.set_keep_pipes(0);  // a reload to a relay that keeps none: the spare one is closed
    BOOST_TEST(fcntl(spare.read_fd, F_GETFD) == -1);
}

BOOST_AUTO_TEST_SUITE_END()
