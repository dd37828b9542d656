#include "shared/log.h"

#include <stdlib.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace dingbridge;

namespace {

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string t = (std::filesystem::temp_directory_path() / "dingbridge-log-XXXXXX").string();
        BOOST_REQUIRE(mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() {
        configure_logging(LogSettings{});  // back to stderr before the files go
        std::filesystem::remove_all(path);
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(logging)

// The proxy's SIGHUP reload sets new log settings while its workers log. With the default logger
// replaced by spdlog::set_default_logger, the workers' spdlog::info reached the old logger through
// a raw pointer after it was freed (AddressSanitizer: heap-use-after-free).
BOOST_AUTO_TEST_CASE(settings_change_while_other_threads_log) {
    TempDir dir;
    const auto a = dir.path / "a.log", b = dir.path / "b.log";
    configure_logging(LogSettings{"info", "text", a.string()});
    std::atomic<bool> stop{false};
    std::atomic<long> lines{0};
    std::vector<std::thread> workers;
    for (int i = 0; i < 2; ++i) {
        workers.emplace_back([&] {
            while (!stop.load()) {
                spdlog::info("a line from a worker");
                lines.fetch_add(1);
            }
        });
    }
    // The workers log before the settings start changing (on a loaded host the 400 changes
    // could otherwise all be done before either thread ran once).
    for (int i = 0; i < 5000 && lines.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int i = 0; i < 400; ++i) {
        configure_logging(LogSettings{i % 3 == 0 ? "warn" : "info", i % 2 ? "json" : "text", (i % 2 ? b : a).string()});
    }
    stop = true;
    for (auto& t : workers) t.join();
    BOOST_TEST(lines.load() > 0);

    // The last settings hold: JSON lines at info into b.log, nothing more into a.log.
    configure_logging(LogSettings{"info", "json", b.string()});
    const auto a_size = std::filesystem::file_size(a);
    spdlog::info("the last line");
    spdlog::default_logger()->flush();
    const std::string text = read_file(b);
    BOOST_TEST(text.find(R"("level":"info","msg":"the last line"})") != std::string::npos);
    BOOST_TEST(std::filesystem::file_size(a) == a_size);

    // A level set by one call is the level of the logger every thread uses.
    configure_logging(LogSettings{"warn", "text", a.string()});
    spdlog::info("not at warn");
    spdlog::warn("at warn");
    const std::string plain = read_file(a);
    BOOST_TEST(plain.find("not at warn") == std::string::npos);
    BOOST_TEST(plain.find(" warning at warn") != std::string::npos);
}

// A file that cannot be opened changes nothing: the running destination stays.
BOOST_AUTO_TEST_CASE(a_file_that_cannot_be_opened_keeps_the_running_log) {
    TempDir dir;
    const auto a = dir.path / "a.log";
    configure_logging(LogSettings{"info", "text", a.string()});
    BOOST_CHECK_THROW(configure_logging(LogSettings{"info", "text", (dir.path / "missing" / "b.log").string()}),
                      std::runtime_error);
    BOOST_CHECK_THROW(configure_logging(LogSettings{"loud", "text", ""}), std::runtime_error);
    spdlog::info("still here");
    BOOST_TEST(read_file(a).find("info still here") != std::string::npos);
    BOOST_TEST(!std::filesystem::exists(dir.path / "missing"));
}

BOOST_AUTO_TEST_SUITE_END()
