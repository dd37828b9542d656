#include "agent/dingtalk/packed_item.h"

#include <cstring>
#include <string>
#include <variant>

#include "agent/dingtalk/fields.h"

namespace dingbridge::agent::dingtalk {

namespace {

void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7F) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}
std::uint64_t get_varint(const char*& p) {
    std::uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        const auto b = static_cast<unsigned char>(*p++);
        v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
}
std::uint64_t zigzag(std::int64_t v) {
    return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
std::int64_t unzigzag(std::uint64_t v) { return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1); }

void put(std::string& out, std::string_view s) {
    put_varint(out, s.size());
    out.append(s);
}
void put(std::string& out, const SmallString& s) { put(out, s.view()); }
void put(std::string& out, const std::string& s) { put(out, std::string_view(s)); }
void put(std::string& out, std::int64_t v) { put_varint(out, zigzag(v)); }
void put(std::string& out, bool v) { out.push_back(v ? 1 : 0); }
template <class T>
void put(std::string& out, const std::vector<T>& list) {
    put_varint(out, list.size());
    for (const auto& x : list) put(out, x);
}

std::string_view get_text(const char*& p) {
    const auto n = static_cast<std::size_t>(get_varint(p));
    std::string_view s(p, n);
    p += n;
    return s;
}
void get(const char*& p, SmallString& s) { s = get_text(p); }
void get(const char*& p, std::string& s) { s = std::string(get_text(p)); }
void get(const char*& p, std::int64_t& v) { v = unzigzag(get_varint(p)); }
void get(const char*& p, bool& v) { v = *p++ != 0; }
template <class T>
void get(const char*& p, std::vector<T>& list) {
    list.resize(static_cast<std::size_t>(get_varint(p)));
    for (auto& x : list) get(p, x);
}

// Calls f(member of item) for every packed field, in the block's order.
template <class Item, class F>
void for_each_packed(Item& item, F&& f) {
    auto each = [&](const auto& table) {
        for (const auto& field : table) std::visit([&](auto member) { f(item.*member); }, field.member);
    };
    each(kUserFields);
    each(kUserPageFields);
    f(item.has_hired_date);
}

}  // namespace

PackedUserItem::PackedUserItem(const UserItem& item) {
    std::string fields;
    fields.reserve(128);
    for_each_packed(item, [&fields](const auto& value) { put(fields, value); });
    std::string block;
    put_varint(block, fields.size());
    block += fields;
    bytes_ = std::make_unique<char[]>(block.size());
    std::memcpy(bytes_.get(), block.data(), block.size());
}

std::size_t PackedUserItem::size() const {
    if (!bytes_) return 0;
    const char* p = bytes_.get();
    const auto n = static_cast<std::size_t>(get_varint(p));
    return static_cast<std::size_t>(p - bytes_.get()) + n;
}

PackedUserItem::PackedUserItem(const PackedUserItem& o) {
    if (!o.bytes_) return;
    const std::size_t n = o.size();
    bytes_ = std::make_unique<char[]>(n);
    std::memcpy(bytes_.get(), o.bytes_.get(), n);
}

PackedUserItem& PackedUserItem::operator=(const PackedUserItem& o) {
    if (this != &o) *this = PackedUserItem(o);
    return *this;
}

UserItem PackedUserItem::unpack() const {
    UserItem item;
    if (!bytes_) return item;
    const char* p = bytes_.get();
    get_varint(p);  // the fields' length
    for_each_packed(item, [&p](auto& value) { get(p, value); });
    return item;
}

}  // namespace dingbridge::agent::dingtalk
