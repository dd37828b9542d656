#include <boost/test/unit_test.hpp>

#include "agent/targets/scim_client.h"

BOOST_AUTO_TEST_CASE(scim_ids_from_the_server_stay_one_path_segment) {
    BOOST_TEST(dingbridge::agent::scim_path_segment("2819c223-7f76-453a-919d-413861904646") ==
               "2819c223-7f76-453a-919d-413861904646");
    BOOST_TEST(dingbridge::agent::scim_path_segment("../Users") == "..%2FUsers");
    BOOST_TEST(dingbridge::agent::scim_path_segment("..") == "%2E%2E");
    BOOST_TEST(dingbridge::agent::scim_path_segment(".") == "%2E");
    BOOST_TEST(dingbridge::agent::scim_path_segment("x?filter=y#z") == "x%3Ffilter%3Dy%23z");
}
