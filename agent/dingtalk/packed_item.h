#pragma once
// A user-list item packed into one exact-size block, for holding a whole org between the fetch
// and the build of a full sync.
//
// Why: a UserItem is 16 SmallStrings, two vectors and flags (about 310 bytes) plus a heap block
// for every text over 15 bytes and for its department list; 100,000 of them were the largest
// thing a first sync held (~60 MiB at the end of the fetch). Packed, the same item is its text
// and a few bytes of lengths, in one allocation.
//
// Layout: a varint length of the rest, then every field of kUserFields and kUserPageFields in
// table order (text: varint length and bytes; integers: zigzag varints; flags: one byte; lists:
// varint count and items), then has_hired_date. unpack() gives back exactly the item that was
// packed.

#include <memory>

#include "agent/dingtalk/model.h"

namespace dingbridge::agent::dingtalk {

class PackedUserItem {
public:
    PackedUserItem() = default;
    explicit PackedUserItem(const UserItem& item);
    PackedUserItem(const PackedUserItem& o);
    PackedUserItem(PackedUserItem&&) noexcept = default;
    PackedUserItem& operator=(const PackedUserItem& o);
    PackedUserItem& operator=(PackedUserItem&&) noexcept = default;

    bool empty() const { return !bytes_; }
    UserItem unpack() const;   // a default UserItem when empty()
    std::size_t size() const;  // the block's size in bytes (0 when empty)

private:
    std::unique_ptr<char[]> bytes_;
};

}  // namespace dingbridge::agent::dingtalk
