#pragma once
// (Re)arms a libevent timer to fire once after `after`.

#include <event2/event.h>

#include <chrono>

namespace dingbridge::proxy {

inline void arm_timer(event* timer, std::chrono::milliseconds after) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(after.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((after.count() % 1000) * 1000);
    evtimer_add(timer, &tv);
}

}  // namespace dingbridge::proxy
