#pragma once
// EnumTable: one entry per enumerator of an enum (its log word, metric label, reply), the one
// idiom for "enum -> fixed value" instead of a switch per enum. The enum's values must run from 0
// to its last enumerator without gaps; the entries are listed in declaration order. Built with
// `enum_table<Enum::last_enumerator>({...})`, whose static_assert refuses a table with a missing
// or an extra entry; `get()` answers a fallback for a value outside the enum (a cast from a
// number). Header-only, constexpr, no allocation; usable from any thread.

#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace dingbridge {

template <class Enum, class T, std::size_t N>
class EnumTable {
    static_assert(std::is_enum_v<Enum>);

public:
    constexpr explicit EnumTable(std::array<T, N> entries) : entries_(entries) {}

    // The entry of `e`, or `fallback` when `e` is not one of the enumerators.
    constexpr T get(Enum e, T fallback) const {
        const auto i = static_cast<std::size_t>(e);
        return i < N ? entries_[i] : fallback;
    }
    static constexpr std::size_t size() { return N; }

private:
    std::array<T, N> entries_;
};

namespace enum_table_detail {
template <class T, std::size_t N, std::size_t... I>
constexpr std::array<T, N> to_array(const T (&entries)[N], std::index_sequence<I...>) {
    return {{entries[I]...}};
}
}  // namespace enum_table_detail

// `Last` is the enum's last enumerator: the table must have exactly one entry per enumerator.
template <auto Last, class T, std::size_t N>
constexpr EnumTable<decltype(Last), T, N> enum_table(const T (&entries)[N]) {
    static_assert(N == static_cast<std::size_t>(Last) + 1, "one entry per enumerator, in declaration order");
    return EnumTable<decltype(Last), T, N>(enum_table_detail::to_array(entries, std::make_index_sequence<N>{}));
}

}  // namespace dingbridge
