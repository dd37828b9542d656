#define BOOST_TEST_MODULE dingbridge_agent_unit
#include <boost/test/unit_test.hpp>
