#define BOOST_TEST_MODULE dingbridge unit tests
#include <boost/test/unit_test.hpp>
