#include "agent/dingtalk/parse.h"

#include <boost/test/unit_test.hpp>

using namespace dingbridge::agent::dingtalk;

BOOST_AUTO_TEST_SUITE(parse)

BOOST_AUTO_TEST_CASE(user_page_parses_and_ignores_unknown_fields) {
    std::string body = R"({"errcode":0,"errmsg":"ok","result":{"has_more":true,"next_cursor":100,"list":[
      {"userid":"u1","name":"张三","dept_id_list":[1,3000000007],"dept_order":5,"leader":true,"active":true,
       "hired_date":1420070400000,"unknown":{"x":[1,2]}}]},"request_id":"r1"})";
    auto r = parse_user_list("/topapi/v2/user/list", body);
    BOOST_REQUIRE(r.ok());
    BOOST_TEST(r.value().has_more);
    BOOST_TEST(r.value().next_cursor == 100);
    BOOST_REQUIRE_EQUAL(r.value().users.size(), 1u);
    BOOST_TEST(r.value().users[0].dept_id_list[1] == 3000000007LL);
    BOOST_TEST(r.value().users[0].leader);
}

BOOST_AUTO_TEST_CASE(errors_are_classified_with_request_id) {
    std::string body =
        R"({"errcode":88,"sub_code":"90018","sub_msg":"qps","errmsg":"ding talk error[subcode=90018]","request_id":"abc"})";
    auto r = parse_listsub("/topapi/v2/department/listsub", body);
    BOOST_REQUIRE(!r.ok());
    BOOST_TEST((r.failure().kind == FailureKind::throttle));
    BOOST_TEST(r.failure().retryable());
    BOOST_TEST(r.failure().message().find("request id abc") != std::string::npos);
    BOOST_TEST(r.failure().message().find("/topapi/v2/department/listsub") != std::string::npos);
    BOOST_TEST((classify_errcode(-1, "") == FailureKind::busy));
    BOOST_TEST((classify_errcode(40014, "") == FailureKind::token));
    BOOST_TEST((classify_errcode(88, "40014") == FailureKind::token));
    BOOST_TEST((classify_errcode(88, "60020") == FailureKind::ip_denied));
    BOOST_TEST((classify_errcode(60020, "") == FailureKind::ip_denied));
    BOOST_TEST((classify_errcode(90020, "") == FailureKind::quota));
    BOOST_TEST((classify_errcode(88, "90002") == FailureKind::throttle));
}

BOOST_AUTO_TEST_CASE(malformed_and_wrong_types_are_errors_not_crashes) {
    for (std::string body : {std::string(R"({"errcode":0,"errmsg":"ok","result":{"list":[{"userid":<html>oops)"),
                             std::string(R"({"errcode":0,"result":{"list":[{"userid":42}]}})"),
                             std::string(R"({"errcode":0,"errmsg":"ok"})"), std::string(""), std::string("[]"),
                             std::string(R"({"errcode":0,"result":{"has_more":"yes","list":[]}})")}) {
        auto r = parse_user_list("/topapi/v2/user/list", body);
        BOOST_TEST_INFO(body);
        BOOST_REQUIRE(!r.ok());
        BOOST_TEST((r.failure().kind == FailureKind::malformed));
        BOOST_TEST(r.failure().retryable());  // truncated/garbled answers are retried like 5xx
    }
    // The request id is named when the broken body still carries it.
    std::string body = R"({"errcode":0,"result":{"list":[{"userid":<html>}]},"request_id":"req-77"})";
    auto r = parse_user_list("/topapi/v2/user/list", body);
    BOOST_REQUIRE(!r.ok());
    BOOST_TEST(r.failure().message().find("request id req-77") != std::string::npos);
}

// Answers that look successful but lack what the sync relies on: read as an empty department, the
// last page, or a blank name, they would disable members, cut paging short or blank the target.
BOOST_AUTO_TEST_CASE(answers_missing_what_the_sync_relies_on_are_malformed) {
    const std::string user = R"({"userid":"u1","name":"张三","dept_id_list":[2]})";
    // Each with what the error says it lacks.
    for (auto [body, says] : std::vector<std::pair<std::string, std::string>>{
             {R"({"errcode":0,"result":{"has_more":false}})", "the page has no list"},
             {R"({"errcode":0,"result":{}})", "the page has no list"},
             {R"({"errcode":0,"result":{"next_cursor":100,"list":[)" + user + "]}}", "the page has no has_more"},
             {R"({"errcode":0,"result":{"has_more":null,"list":[)" + user + "]}}", "the page has no has_more"},
             {R"({"errcode":0,"result":{"has_more":false,"list":[{"userid":"u1"}]}})", "user u1 has no name"},
             {R"({"errcode":0,"result":{"has_more":false,"list":[{"userid":"u1","name":null}]}})",
              "user u1 has no name"},
             {R"({"errcode":0,"result":{"has_more":false,"list":[{"userid":"u1","name":"a",)"
              R"("hired_date":-9223372036854775807}]}})",
              "user u1 has a negative hired_date (-9223372036854775807)"},
             {R"({"errcode":0,"result":{"has_more":false,"list":[{"name":"a"}]}})", "a user without a userid"}}) {
        auto r = parse_user_list("/topapi/v2/user/list", body);
        BOOST_TEST_INFO(body);
        BOOST_REQUIRE(!r.ok());
        BOOST_TEST((r.failure().kind == FailureKind::malformed));
        BOOST_TEST(r.failure().message().find("malformed response: " + says) != std::string::npos,
                   r.failure().message());
    }
    // A break in the JSON itself still says where simdjson stopped (and is not a stale reason).
    std::string cut = R"({"errcode":0,"result":{"has_more":false,"list":[{"userid":"u1","name":)";
    auto broken = parse_user_list("/topapi/v2/user/list", cut);
    BOOST_REQUIRE(!broken.ok());
    BOOST_TEST(broken.failure().message().find("has no") == std::string::npos, broken.failure().message());
    std::string empty = R"({"errcode":0,"result":{"has_more":false,"list":[]}})";  // an empty department
    BOOST_TEST(parse_user_list("/topapi/v2/user/list", empty).ok());
    std::string nameless = R"({"errcode":0,"result":{"dept_id":4,"parent_id":1}})";
    auto d = parse_dept_get("/topapi/v2/department/get", nameless);
    BOOST_REQUIRE(!d.ok());
    BOOST_TEST((d.failure().kind == FailureKind::malformed));
    BOOST_TEST(d.failure().message().find("department 4 has no name") != std::string::npos, d.failure().message());
}

BOOST_AUTO_TEST_CASE(per_ip_deny_page_is_named) {
    std::string body = R"({"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"u"})";
    auto r = parse_listsub("/topapi/v2/department/listsub", body);
    BOOST_REQUIRE(!r.ok());
    BOOST_TEST(r.failure().message().find("per-IP limit") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(allowlist_ip_and_scopes_are_extracted) {
    BOOST_TEST(ip_from_allowlist_message(
                   "ding talk error[subcode=60020,submsg=访问ip不在白名单之中,request ip=14.153.172.241 appKey(x)]") ==
               "14.153.172.241");
    BOOST_TEST(scopes_from_permission_message("no permission {requiredScopes=[qyapi_get_department_list]}") ==
               "qyapi_get_department_list");
}

BOOST_AUTO_TEST_CASE(user_get_gives_the_same_places_as_the_list_pages_plus_manager) {
    std::string body = R"({"errcode":0,"errmsg":"ok","result":{"userid":"u1","name":"李四 🚀","email":"l@x.cn",
      "dept_id_list":[2,3000000007],"dept_order_list":[{"dept_id":2,"order":7},{"dept_id":3000000007,"order":-3}],
      "leader_in_dept":[{"dept_id":2,"leader":false},{"dept_id":3000000007,"leader":true}],
      "manager_userid":"boss1","role_list":[{"id":1,"name":"r","group_name":"g"}],"senior":false,
      "union_emp_ext":{"userid":"u1","corp_id":"c","union_emp_map_list":[]},"active":true},"request_id":"r9"})";
    auto r = parse_user_get("/topapi/v2/user/get", body);
    BOOST_REQUIRE(r.ok());
    const auto& d = r.value();
    BOOST_TEST(d.item.userid == "u1");
    BOOST_TEST(d.item.email == "l@x.cn");
    BOOST_TEST(d.manager_userid == "boss1");
    BOOST_REQUIRE_EQUAL(d.places.size(), 2u);
    BOOST_TEST(d.places[0].dept_id == 2);
    BOOST_TEST(d.places[0].order == 7);
    BOOST_TEST(!d.places[0].leader);
    BOOST_TEST(d.places[1].dept_id == 3000000007LL);
    BOOST_TEST(d.places[1].order == -3);
    BOOST_TEST(d.places[1].leader);
    auto m = d.merged();
    BOOST_TEST(m.manager_userid == "boss1");
    BOOST_TEST(m.places.size() == 2u);
    BOOST_TEST(m.item.name == "李四 🚀");
}

BOOST_AUTO_TEST_CASE(user_get_without_manager_or_lists_and_errors) {
    std::string body = R"({"errcode":0,"result":{"userid":"u2","name":"n","dept_id_list":[1],"manager_userid":null}})";
    auto r = parse_user_get("/topapi/v2/user/get", body);
    BOOST_REQUIRE(r.ok());
    BOOST_TEST(r.value().manager_userid.empty());
    BOOST_REQUIRE_EQUAL(r.value().places.size(), 1u);
    BOOST_TEST(r.value().places[0].dept_id == 1);
    BOOST_TEST(r.value().places[0].order == 0);

    std::string gone = R"({"errcode":60121,"errmsg":"找不到该用户","request_id":"q1"})";
    auto g = parse_user_get("/topapi/v2/user/get", gone);
    BOOST_REQUIRE(!g.ok());
    BOOST_TEST((g.failure().kind == FailureKind::not_found));
    BOOST_TEST(!g.failure().retryable());
    BOOST_TEST(g.failure().message().find("request id q1") != std::string::npos);

    for (std::string bad : {std::string(R"({"errcode":0,"result":{"name":"no id"}})"),
                            std::string(R"({"errcode":0,"result":{"userid":"u","dept_order_list":[{"order":1}]}})"),
                            std::string(R"({"errcode":0,"result":{"userid":"u","leader_in_dept":{"dept_id":1}}})"),
                            std::string(R"({"errcode":0,"result":{"userid":"u","manager_userid":5}})"),
                            std::string(R"({"errcode":0,"result":{"userid":"u","dept_id_list":[1)")}) {
        BOOST_TEST_INFO(bad);
        auto b = parse_user_get("/topapi/v2/user/get", bad);
        BOOST_REQUIRE(!b.ok());
        BOOST_TEST((b.failure().kind == FailureKind::malformed));
    }
}

BOOST_AUTO_TEST_CASE(legacy_recursive_department_list) {
    std::string body = R"({"errcode":0,"errmsg":"ok","department":[{"id":2,"name":"研发部","parentid":1,
      "createDeptGroup":true,"autoAddUser":true},{"id":3000000007,"name":"x","parentid":2}]})";
    auto r = parse_legacy_department_list("/department/list", body);
    BOOST_REQUIRE(r.ok());
    BOOST_REQUIRE_EQUAL(r.value().size(), 2u);
    BOOST_TEST(r.value()[1].dept_id == 3000000007LL);
    BOOST_TEST(r.value()[1].parent_id == 2);
    std::string bad_token = R"({"errcode":40014,"errmsg":"不合法的access_token"})";
    auto t = parse_legacy_department_list("/department/list", bad_token);
    BOOST_REQUIRE(!t.ok());
    BOOST_TEST((t.failure().kind == FailureKind::token));
    std::string no_parent = R"({"errcode":0,"department":[{"id":2,"name":"x"}]})";
    BOOST_TEST(!parse_legacy_department_list("/department/list", no_parent).ok());
}

// The department list of a large org is parsed by a parser of its own (its buffers are freed
// with it): the answers before and after it, small ones on the thread's parser, still parse.
BOOST_AUTO_TEST_CASE(a_large_answer_between_small_ones) {
    std::string small = R"({"errcode":0,"department":[{"id":2,"name":"小","parentid":1}]})";
    BOOST_REQUIRE(parse_legacy_department_list("/department/list", small).ok());
    std::string big = R"({"errcode":0,"errmsg":"ok","department":[)";
    const int n = 6000;  // about 400 KiB, past the thread parser's limit
    for (int i = 0; i < n; ++i) {
        if (i) big += ",";
        big += R"({"id":)" + std::to_string(100 + i) + R"(,"name":"部门 )" + std::to_string(i) +
               R"( Department with a longer name","parentid":)" + std::to_string(i ? 99 + i : 1) +
               R"(,"createDeptGroup":true,"autoAddUser":true})";
    }
    big += "]}";
    BOOST_REQUIRE_GT(big.size(), 256u * 1024);
    auto r = parse_legacy_department_list("/department/list", big);
    BOOST_REQUIRE(r.ok());
    BOOST_REQUIRE_EQUAL(r.value().size(), static_cast<std::size_t>(n));
    BOOST_TEST(r.value()[n - 1].dept_id == 100 + n - 1);
    BOOST_TEST(r.value()[n - 1].parent_id == 99 + n - 1);
    BOOST_TEST(r.value()[n - 1].name == "部门 " + std::to_string(n - 1) + " Department with a longer name");
    std::string truncated = big.substr(0, big.size() / 2);
    BOOST_TEST(!parse_legacy_department_list("/department/list", truncated).ok());
    std::string again = R"({"errcode":0,"department":[{"id":3,"name":"后","parentid":1}]})";
    auto a = parse_legacy_department_list("/department/list", again);
    BOOST_REQUIRE(a.ok());
    BOOST_TEST(a.value()[0].name == "后");
}

BOOST_AUTO_TEST_SUITE_END()
