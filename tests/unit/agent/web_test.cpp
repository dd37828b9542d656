// The web console's pure parts: escaping, language choice, splitting DingTalk's error text,
// the web: section's refusals, the login throttle, and the read-only view of a state database being written.
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>

#include "agent/config.h"
#include "agent/sync/history.h"
#include "agent/sync/run_reporter.h"
#include "agent/web/console.h"
#include "agent/web/history_view.h"
#include "agent/web/labels.h"
#include "agent/web/login_throttle.h"
#include "shared/config.h"

using namespace dingbridge;
using namespace dingbridge::agent;
using namespace dingbridge::agent::web;

namespace {

AgentConfig::Web load_web(const std::string& yaml) {
    auto node = ConfigNode::load_string(yaml, "agent.yaml");
    AgentConfig::Web web;
    load_web_section(node.get("web"), web, "/etc/dingbridge/agent.yaml");
    return web;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(web_console)

BOOST_AUTO_TEST_CASE(html_escape_turns_markup_into_text) {
    BOOST_TEST(html_escape("<script>alert('x')</script> & \"q\"") ==
               "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    BOOST_TEST(html_escape("研发部") == "研发部");
}

BOOST_AUTO_TEST_CASE(language_from_query_then_accept_language) {
    BOOST_TEST((pick_lang("zh", "en-US") == Lang::zh));
    BOOST_TEST((pick_lang("en", "zh-CN") == Lang::en));
    BOOST_TEST((pick_lang("", "zh-CN,zh;q=0.9,en;q=0.8") == Lang::zh));
    BOOST_TEST((pick_lang("", "en-GB,zh;q=0.5") == Lang::en));
    BOOST_TEST((pick_lang("", "") == Lang::en));
    BOOST_TEST(label(Lang::zh, "partial") == "部分失败");
    BOOST_TEST(label(Lang::en, "no-such-key") == "no-such-key");
}

BOOST_AUTO_TEST_CASE(item_error_split_into_api_errcode_errmsg_request_id) {
    RunItem it{
        "fetch", "department", "1", "/topapi/v2/user/list",
        "/topapi/v2/user/list: errcode 88 sub_code 40014: ding talk error[subcode=40014,submsg=不合法的access_token] "
        "(request id okuikljbfsat2)"};
    auto e = parse_item_error(it);
    BOOST_TEST(e.api == "/topapi/v2/user/list");
    BOOST_TEST(e.errcode == "88");
    BOOST_TEST(e.errmsg == "ding talk error[subcode=40014,submsg=不合法的access_token]");
    BOOST_TEST(e.request_id == "okuikljbfsat2");
    auto n = parse_item_error(RunItem{"fetch", "user", "u1", "/topapi/v2/user/get",
                                      "/topapi/v2/user/get: network error: timeout (request id none)"});
    BOOST_TEST(n.api == "/topapi/v2/user/get");
    BOOST_TEST(n.errcode.empty());
    BOOST_TEST(n.request_id.empty());
    auto plan = parse_item_error(RunItem{"plan", "user", "u2", "conflict", "email 'a@b' is already used by user u3"});
    BOOST_TEST(plan.api.empty());
    BOOST_TEST(plan.errcode.empty());
}

// The text comes from DingTalk or a directory server, of any length: std::regex recursed once per
// character here and the console died (SIGSEGV) on every view of a run with a 70,000-byte errmsg.
BOOST_AUTO_TEST_CASE(item_error_of_a_megabyte_is_split_without_recursion) {
    const std::string msg(1 << 20, 'x');
    auto e = parse_item_error(RunItem{"fetch", "department", "1", "/topapi/v2/user/list",
                                      "/topapi/v2/user/list: errcode 88: " + msg + " (request id r1)"});
    BOOST_TEST(e.api == "/topapi/v2/user/list");
    BOOST_TEST(e.errcode == "88");
    BOOST_TEST(e.errmsg.size() == msg.size());
    BOOST_TEST(e.request_id == "r1");
    auto open = parse_item_error(RunItem{"fetch", "user", "u", "", "/x: errcode -1 sub_code: " + msg});
    BOOST_TEST(open.errcode.empty());  // " sub_code:" without a code: not the errcode form at all
    BOOST_TEST(open.errmsg.empty());
}

BOOST_AUTO_TEST_CASE(an_error_text_is_clipped_between_characters_and_keeps_its_request_id) {
    BOOST_TEST(clip_error("short") == "short");
    std::string msg = "/topapi/v2/user/list: errcode 88: ";
    while (msg.size() < 100000) msg += "不合法";  // 3-byte characters: a byte cut would split one
    msg += " (request id r9)";
    const std::string clipped = clip_error(msg);
    BOOST_TEST(clipped.size() <= kErrorTextMax + 64);
    BOOST_TEST(clipped.find("bytes left out") != std::string::npos);
    auto e = parse_item_error(RunItem{"fetch", "department", "1", "", clipped});
    BOOST_TEST(e.errcode == "88");
    BOOST_TEST(e.request_id == "r9");
    for (std::size_t i = 0; i + 1 < clipped.size(); ++i)  // no lead byte without its continuation
        if (static_cast<unsigned char>(clipped[i]) >= 0xE0)
            BOOST_TEST((static_cast<unsigned char>(clipped[i + 1]) & 0xC0) == 0x80);
}

BOOST_AUTO_TEST_CASE(item_error_edge_forms) {
    auto sub =
        parse_item_error(RunItem{"fetch", "user", "u", "", "/a/b: errcode 60011 sub_code 4.1: no (request id  )"});
    BOOST_TEST(sub.errcode == "60011");
    BOOST_TEST(sub.errmsg == "no");
    BOOST_TEST(sub.request_id.empty());  // the id part is blank: no id
    auto later =
        parse_item_error(RunItem{"fetch", "user", "u", "", "/a: errcode x then errcode 7: late (request id q) "});
    BOOST_TEST(later.errcode == "7");
    BOOST_TEST(later.errmsg == "late");
    BOOST_TEST(later.request_id == "q");  // trailing whitespace allowed
    auto spaced = parse_item_error(RunItem{"apply", "user", "u", "/op", "/not an api: errcode 5:"});
    BOOST_TEST(spaced.api == "/op");  // a space before the ':' is not an API path: the operation's
    BOOST_TEST(spaced.errcode.empty());
}

BOOST_AUTO_TEST_CASE(web_section_refuses_open_console_off_loopback) {
    BOOST_CHECK_NO_THROW(load_web("web:\n  listen: \"127.0.0.1:9480\"\n"));
    BOOST_CHECK_NO_THROW(load_web("web:\n  listen: \"[::1]:9480\"\n"));
    BOOST_CHECK_THROW(load_web("web:\n  listen: \"0.0.0.0:9480\"\n"), ConfigError);
    BOOST_CHECK_THROW(load_web("web:\n  listen: \"10.1.2.3:9480\"\n"), ConfigError);
    BOOST_CHECK_THROW(load_web("web:\n  listen: \"console.example:9480\"\n"), ConfigError);
    auto w = load_web(
        "web:\n  listen: \"0.0.0.0:9480\"\n  users:\n    - name: hr\n      password_hash: "
        "\"$scrypt$ln=15,r=8,p=1$a$b\"\n");
    BOOST_TEST(w.users.size() == 1u);
    BOOST_CHECK_THROW(load_web("web:\n  listen: \"0.0.0.0:1\"\n  users:\n    - name: hr\n      password_hash: plain\n"),
                      ConfigError);
    auto t = load_web(
        "web:\n  listen: \"0.0.0.0:1\"\n  tls:\n    certificate: c.pem\n    key: k.pem\n    client_ca: ca.pem\n");
    BOOST_TEST(t.client_ca == "/etc/dingbridge/ca.pem");
}

BOOST_AUTO_TEST_CASE(history_view_reads_while_a_run_is_being_written) {
    auto dir = std::filesystem::temp_directory_path() / ("dingbridge-web-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string db = (dir / "state.db").string();
    {
        HistoryView missing(db);  // never creates the database
        BOOST_TEST(!missing.ok());
        BOOST_TEST(!std::filesystem::exists(db));
    }
    HistoryStore store(db);
    const auto started = store.start_run("full", "cli", false);
    BOOST_REQUIRE(started.ok());
    const std::int64_t id = *started;
    BOOST_REQUIRE(id > 0);
    RunCounters c;
    c.users_fetched = 7;
    BOOST_TEST(store.update_progress(id, c).ok());
    HistoryView view(db);
    BOOST_REQUIRE(view.ok());
    auto r = view.run(id);
    BOOST_REQUIRE(r.has_value());
    BOOST_TEST(r->status == "running");
    BOOST_TEST(r->counters.users_fetched == 7);
    BOOST_TEST(store.add_item(id, RunItem{"apply", "user", "<u>", "update_user", "boom"}).ok());
    c.items_failed = 1;
    BOOST_TEST(store.finish_run(id, "partial", "done", c).ok());  // the writer is not blocked by the reader
    auto done = HistoryView(db).run(id);
    BOOST_TEST(done->status == "partial");
    BOOST_REQUIRE(done->items.size() == 1u);
    BOOST_TEST(done->items[0].external_id == "<u>");
    BOOST_TEST(HistoryView(db).totals().items_failed == 1);
    BOOST_TEST(iso_to_ms("2026-11-30T07:05:23.123Z") == 1796022323123LL);
    std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(login_throttle_is_per_source_and_per_name) {
    LoginThrottle t;
    const auto now = LoginThrottle::Clock::now();
    const auto a = *IpAddress::parse("192.0.2.7"), b = *IpAddress::parse("192.0.2.8");
    const std::string admin = "admin";
    for (unsigned i = 0; i < LoginThrottle::kPerSource; ++i) {
        BOOST_TEST(t.wait(a, &admin, now) == 0);
        t.refused(a, &admin, now);
    }
    BOOST_TEST(t.wait(a, &admin, now) > 0);
    BOOST_TEST(t.wait(a, nullptr, now) > 0, "the source, whatever name it tries");
    BOOST_TEST(t.wait(b, &admin, now) == 0, "another source may still log in as that user");
    BOOST_TEST(t.wait(a, &admin, now + std::chrono::seconds(61)) == 0, "lifted after a minute");
    t.verified(a, now);
    BOOST_TEST(t.wait(a, &admin, now + std::chrono::seconds(1)) > 0, "a success does not clear the failures");

    // One name guessed from many sources (an IPv6 /64 counts as one source).
    LoginThrottle u;
    for (unsigned i = 0; i < LoginThrottle::kPerUser; ++i)
        u.refused(*IpAddress::parse("2001:db8:" + std::to_string(i) + "::1"), &admin, now);
    BOOST_TEST(u.wait(*IpAddress::parse("2001:db8:ffff::1"), &admin, now) > 0);
    const std::string other = "other";
    BOOST_TEST(u.wait(*IpAddress::parse("2001:db8:ffff::1"), &other, now) == 0);
    // The address an administrator logged in from is not locked out by others guessing the name.
    u.verified(*IpAddress::parse("2001:db8:aaaa::1"), now);
    BOOST_TEST(u.wait(*IpAddress::parse("2001:db8:aaaa::2"), &admin, now) == 0, "same /64");
}

BOOST_AUTO_TEST_CASE(login_throttle_budget_of_all_sources_spares_verified_sources) {
    LoginThrottle t;
    const auto now = LoginThrottle::Clock::now();
    const auto home = *IpAddress::parse("10.0.0.1"), newcomer = *IpAddress::parse("10.0.0.2");
    t.verified(home, now);
    const std::string name = "guess";
    for (int i = 0; i < LoginThrottle::kAllSources; ++i)
        t.refused(*IpAddress::parse("198.51.100." + std::to_string(i % 250)), nullptr, now);
    BOOST_TEST(t.wait(newcomer, &name, now) > 0, "beyond the budget, unknown sources wait");
    BOOST_TEST(t.wait(newcomer, &name, now) <= 60);
    BOOST_TEST(t.wait(home, &name, now) == 0, "a source that logged in before may still try");
    BOOST_TEST(t.wait(newcomer, &name, now + std::chrono::minutes(1)) == 0, "a new minute, a new budget");
    // Trust lasts kTrust after the last verified login.
    const auto later = now + LoginThrottle::kTrust + std::chrono::minutes(1);
    for (int i = 0; i < LoginThrottle::kAllSources; ++i)
        t.refused(*IpAddress::parse("203.0.113." + std::to_string(i % 250)), nullptr, later);
    BOOST_TEST(t.wait(home, &name, later) > 0);
}

BOOST_AUTO_TEST_SUITE_END()
