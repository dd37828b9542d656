#include "shared/config.h"

#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>
#include <optional>

using namespace dingbridge;
using namespace std::chrono_literals;

namespace {
// Runs `f`, which must throw a ConfigError, and returns that error; the test case stops with
// `accepted` when it throws none.
template <class F>
ConfigError config_error(F f, const char* accepted) {
    std::optional<ConfigError> error;
    try {
        f();
    } catch (const ConfigError& e) {
        error = e;
    }
    BOOST_REQUIRE_MESSAGE(error.has_value(), accepted);
    return *error;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(config)

BOOST_AUTO_TEST_CASE(durations_need_units) {
    BOOST_TEST(parse_duration("30s")->count() == 30000);
    BOOST_TEST(parse_duration("5m")->count() == 300000);
    BOOST_TEST(parse_duration("2h")->count() == 7200000);
    BOOST_TEST(parse_duration("250ms")->count() == 250);
    BOOST_TEST(parse_duration("1h30m")->count() == 5400000);
    BOOST_TEST(!parse_duration("30"));
    BOOST_TEST(!parse_duration("s"));
    BOOST_TEST(!parse_duration("-5s"));
    BOOST_TEST(!parse_duration("5 parsecs"));
    BOOST_TEST(!parse_duration("99999999999999h"));
}

BOOST_AUTO_TEST_CASE(sizes_accept_binary_and_decimal_units) {
    BOOST_TEST(*parse_size("512") == 512u);
    BOOST_TEST(*parse_size("8KiB") == 8192u);
    BOOST_TEST(*parse_size("4MiB") == 4u * 1024 * 1024);
    BOOST_TEST(*parse_size("1GiB") == 1024u * 1024 * 1024);
    BOOST_TEST(*parse_size("10KB") == 10000u);
    BOOST_TEST(!parse_size("8 kilobytes"));
    BOOST_TEST(!parse_size("KiB"));
    BOOST_TEST(!parse_size("-1"));
}

BOOST_AUTO_TEST_CASE(unknown_key_names_file_line_column_and_key) {
    auto root = ConfigNode::load_string("limits:\n  header_timeout: 10s\n  heder_timeout: 5s\n", "proxy.yaml");
    auto limits = root.get("limits");
    limits.get_duration("header_timeout", 1s);
    const ConfigError e = config_error([&] { limits.reject_unknown(); }, "unknown key accepted");
    BOOST_TEST(e.file() == "proxy.yaml");
    BOOST_TEST(e.line() == 3);
    BOOST_TEST(e.column() == 3);
    BOOST_TEST(std::string(e.what()).find("heder_timeout") != std::string::npos);
    BOOST_TEST(std::string(e.what()).find("proxy.yaml:3:3") == 0);
}

BOOST_AUTO_TEST_CASE(bad_value_reports_its_position_and_what_is_valid) {
    auto root = ConfigNode::load_string("a: 1\ntimeout: 30\n", "x.yaml");
    const ConfigError e = config_error([&] { root.get("timeout").as_duration(); }, "bare number accepted as duration");
    BOOST_TEST(e.line() == 2);
    BOOST_TEST(e.key() == "timeout");
    BOOST_TEST(std::string(e.what()).find("30s") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(yaml_syntax_error_has_position) {
    const ConfigError e =
        config_error([] { ConfigNode::load_string("a: 1\nb: [1, 2\nc: 3\n", "broken.yaml"); }, "syntax error accepted");
    BOOST_TEST(e.file() == "broken.yaml");
    BOOST_TEST(e.line() >= 2);
    BOOST_TEST(std::string(e.what()).find("YAML syntax error") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(duplicate_keys_are_refused_not_silently_dropped) {
    const ConfigError e =
        config_error([] { ConfigNode::load_string("limits:\n  a: 1\nother: 2\nlimits:\n  a: 2\n", "dup.yaml"); },
                     "duplicate key accepted");
    BOOST_TEST(e.line() == 4);
    BOOST_TEST(std::string(e.what()).find("duplicate key 'limits'") != std::string::npos);
    BOOST_CHECK_THROW(ConfigNode::load_string("t:\n  - name: a\n    name: b\n", "dup.yaml"), ConfigError);
}

BOOST_AUTO_TEST_CASE(missing_required_key_is_named) {
    auto root = ConfigNode::load_string("a: 1\n", "x.yaml");
    const ConfigError e = config_error([&] { root.get("tenants"); }, "missing key accepted");
    BOOST_TEST(std::string(e.what()).find("missing required key 'tenants'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(secret_references_resolve_without_leaking_values) {
    ::setenv("DINGBRIDGE_TEST_SECRET", "s3cr3t-value", 1);
    BOOST_TEST(resolve_secret("${env:DINGBRIDGE_TEST_SECRET}") == "s3cr3t-value");
    BOOST_TEST(resolve_secret("plain") == "plain");
    const std::string path = "/tmp/dingbridge-unit-secret-" + std::to_string(::getpid());
    { std::ofstream(path) << "from-file\n"; }
    BOOST_TEST(resolve_secret("${file:" + path + "}") == "from-file");
    std::remove(path.c_str());
    try {
        resolve_secret("${env:DINGBRIDGE_SURELY_UNSET_VARIABLE}");
        BOOST_FAIL("unset variable accepted");
    } catch (const std::exception& e) {
        BOOST_TEST(std::string(e.what()).find("DINGBRIDGE_SURELY_UNSET_VARIABLE") != std::string::npos);
    }
    BOOST_CHECK_THROW(resolve_secret("${vault:x}"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(a_choice_names_every_valid_value) {
    enum class Mode { fast, safe, off };
    auto root = ConfigNode::load_string("a: safe\nb: slow\n", "agent.yaml");
    const std::pair<const char*, Mode> modes[] = {{"fast", Mode::fast}, {"safe", Mode::safe}, {"off", Mode::off}};
    BOOST_TEST((root.get("a").as_choice(modes) == Mode::safe));
    const ConfigError e = config_error([&] { (void)root.get("b").as_choice(modes); }, "slow accepted");
    BOOST_TEST(e.line() == 2);
    BOOST_TEST(e.key() == "b");
    BOOST_TEST(e.reason() == "must be fast, safe or off");
    BOOST_TEST(must_be_one_of({"disable", "delete"}) == "must be disable or delete");
}

BOOST_AUTO_TEST_SUITE_END()
