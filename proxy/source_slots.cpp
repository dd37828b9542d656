#include "proxy/source_slots.h"

#include <cstring>

namespace dingbridge::proxy {

SourceSlots::Key SourceSlots::key_of(const IpAddress& source) { return source.source().bytes(); }

std::size_t SourceSlots::KeyHash::operator()(const Key& k) const noexcept {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    std::memcpy(&hi, k.data(), 8);
    std::memcpy(&lo, k.data() + 8, 8);
    return std::hash<std::uint64_t>{}(hi * 0x9E3779B97F4A7C15ULL ^ lo);
}

bool SourceSlots::take(const IpAddress& source, std::size_t limit) {
    const Key key = key_of(source);
    std::lock_guard lock(mu_);
    std::uint32_t& n = held_[key];
    if (limit != 0 && n >= limit) return false;
    ++n;
    return true;
}

void SourceSlots::release(const IpAddress& source) {
    const Key key = key_of(source);
    std::lock_guard lock(mu_);
    const auto it = held_.find(key);
    if (it == held_.end()) return;
    if (--it->second == 0) held_.erase(it);
}

std::size_t SourceSlots::held(const IpAddress& source) const {
    const Key key = key_of(source);
    std::lock_guard lock(mu_);
    const auto it = held_.find(key);
    return it == held_.end() ? 0 : it->second;
}

std::size_t SourceSlots::sources() const {
    std::lock_guard lock(mu_);
    return held_.size();
}

}  // namespace dingbridge::proxy
