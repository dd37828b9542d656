// The web console's pure parts: escaping, language choice, splitting DingTalk's error text,
// the web: section's refusals, and the read-only view of a state database being written.
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>

#include "agent/config.h"
#include "agent/sync/history.h"
#include "agent/web/console.h"
#include "agent/web/history_view.h"
#include "agent/web/labels.h"
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

BOOST_AUTO_TEST_SUITE_END()
