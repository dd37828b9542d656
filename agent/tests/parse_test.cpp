#include <boost/test/unit_test.hpp>

#include "agent/dingtalk/parse.h"

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
    std::string body = R"({"errcode":88,"sub_code":"90018","sub_msg":"qps","errmsg":"ding talk error[subcode=90018]","request_id":"abc"})";
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
        BOOST_TEST(!r.failure().retryable());
    }
}

BOOST_AUTO_TEST_CASE(per_ip_deny_page_is_named) {
    std::string body = R"({"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"u"})";
    auto r = parse_listsub("/topapi/v2/department/listsub", body);
    BOOST_REQUIRE(!r.ok());
    BOOST_TEST(r.failure().message().find("per-IP limit") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(allowlist_ip_and_scopes_are_extracted) {
    BOOST_TEST(ip_from_allowlist_message("ding talk error[subcode=60020,submsg=访问ip不在白名单之中,request ip=14.153.172.241 appKey(x)]") ==
               "14.153.172.241");
    BOOST_TEST(scopes_from_permission_message("no permission {requiredScopes=[qyapi_get_department_list]}") ==
               "qyapi_get_department_list");
}

BOOST_AUTO_TEST_SUITE_END()
