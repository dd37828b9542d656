#pragma once
// A 16-byte string for the many text fields of an in-memory org.
//
// Why: a sync of 100,000 users holds every user's dozen text fields at once; std::string takes
// 32 bytes per field before any text, this takes 16 (with CustomFields, an OrgUser went from 464
// to 232 bytes). Text of up to 15 bytes is stored inline, like std::string's short-string buffer;
// longer text is one exact-size heap block. The trick is folly's fbstring's: the last inline
// byte holds 15 - size, so a 15-byte text ends in its own NUL; a heap text marks that byte 0xFF.
//
// It converts implicitly to std::string_view (and to std::string where a const std::string& is
// wanted), compares with any string, and is assigned from any string. There is no in-place
// mutation besides assignment, clear() and +=.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dingbridge::agent {

class SmallString {
public:
    SmallString() noexcept { set_empty(); }
    SmallString(std::string_view s) { init(s); }    // NOLINT(google-explicit-constructor)
    SmallString(const char* s) { init(s); }         // NOLINT(google-explicit-constructor)
    SmallString(const std::string& s) { init(s); }  // NOLINT(google-explicit-constructor)
    SmallString(const SmallString& o) { init(o.view()); }
    SmallString(SmallString&& o) noexcept {
        std::memcpy(buf_, o.buf_, sizeof buf_);
        o.set_empty();
    }
    ~SmallString() { release(); }

    SmallString& operator=(const SmallString& o) {
        if (this != &o) assign(o.view());
        return *this;
    }
    SmallString& operator=(SmallString&& o) noexcept {
        if (this != &o) {
            release();
            std::memcpy(buf_, o.buf_, sizeof buf_);
            o.set_empty();
        }
        return *this;
    }
    SmallString& operator=(std::string_view s) {
        assign(s);
        return *this;
    }
    SmallString& operator=(const std::string& s) { return *this = std::string_view(s); }
    SmallString& operator=(const char* s) { return *this = std::string_view(s); }
    SmallString& operator+=(std::string_view s) {
        assign(std::string(view()).append(s));
        return *this;
    }

    bool on_heap() const noexcept { return static_cast<unsigned char>(buf_[15]) == kHeap; }
    std::size_t size() const noexcept {
        if (!on_heap()) return 15 - static_cast<unsigned char>(buf_[15]);
        std::uint32_t n;
        std::memcpy(&n, buf_ + sizeof(char*), sizeof n);
        return n;
    }
    std::size_t length() const noexcept { return size(); }
    bool empty() const noexcept { return size() == 0; }
    const char* data() const noexcept { return on_heap() ? heap_ptr() : buf_; }
    const char* c_str() const noexcept { return data(); }  // always NUL-terminated
    const char* begin() const noexcept { return data(); }
    const char* end() const noexcept { return data() + size(); }
    char operator[](std::size_t i) const noexcept { return data()[i]; }
    char front() const noexcept { return data()[0]; }
    char back() const noexcept { return data()[size() - 1]; }
    void clear() noexcept {
        release();
        set_empty();
    }

    std::string_view view() const noexcept { return {data(), size()}; }
    std::string str() const { return std::string(view()); }
    operator std::string_view() const noexcept { return view(); }  // NOLINT(google-explicit-constructor)
    operator std::string() const { return str(); }                 // NOLINT(google-explicit-constructor)

    std::size_t find(std::string_view s, std::size_t pos = 0) const noexcept { return view().find(s, pos); }
    std::size_t find(char c, std::size_t pos = 0) const noexcept { return view().find(c, pos); }
    std::size_t rfind(char c, std::size_t pos = std::string_view::npos) const noexcept { return view().rfind(c, pos); }
    std::string substr(std::size_t pos, std::size_t n = std::string_view::npos) const {
        return std::string(view().substr(pos, n));
    }
    int compare(std::string_view s) const noexcept { return view().compare(s); }

    friend bool operator==(const SmallString& a, const SmallString& b) noexcept { return a.view() == b.view(); }
    friend bool operator==(const SmallString& a, std::string_view b) noexcept { return a.view() == b; }
    friend bool operator==(const SmallString& a, const std::string& b) noexcept { return a.view() == b; }
    friend bool operator==(const SmallString& a, const char* b) noexcept { return a.view() == b; }
    friend std::strong_ordering operator<=>(const SmallString& a, const SmallString& b) noexcept {
        return a.view() <=> b.view();
    }
    friend std::strong_ordering operator<=>(const SmallString& a, std::string_view b) noexcept {
        return a.view() <=> b;
    }
    friend std::strong_ordering operator<=>(const SmallString& a, const std::string& b) noexcept {
        return a.view() <=> std::string_view(b);
    }
    friend std::strong_ordering operator<=>(const SmallString& a, const char* b) noexcept {
        return a.view() <=> std::string_view(b);
    }

    friend std::string operator+(const SmallString& a, std::string_view b) { return a.str().append(b); }
    friend std::string operator+(const SmallString& a, const std::string& b) { return a.str().append(b); }
    friend std::string operator+(const SmallString& a, const char* b) { return a.str().append(b); }
    friend std::string operator+(const SmallString& a, char b) { return a.str() + b; }
    friend std::string operator+(const SmallString& a, const SmallString& b) { return a.str().append(b.view()); }
    friend std::string operator+(std::string_view a, const SmallString& b) { return std::string(a).append(b.view()); }
    friend std::string operator+(const std::string& a, const SmallString& b) { return std::string(a).append(b.view()); }
    friend std::string operator+(std::string&& a, const SmallString& b) { return std::move(a.append(b.view())); }
    friend std::string operator+(const char* a, const SmallString& b) { return std::string(a).append(b.view()); }
    friend std::string operator+(char a, const SmallString& b) { return std::string(1, a).append(b.view()); }

    friend std::ostream& operator<<(std::ostream& out, const SmallString& s) { return out << s.view(); }

private:
    static constexpr unsigned char kHeap = 0xFF;

    char* heap_ptr() const noexcept {
        char* p;
        std::memcpy(&p, buf_, sizeof p);
        return p;
    }
    void set_empty() noexcept {
        buf_[0] = '\0';
        buf_[15] = 15;
    }
    void release() noexcept {
        if (on_heap()) delete[] heap_ptr();
    }
    // Fills an empty (or released) string with `s`.
    void init(std::string_view s) {
        if (s.size() <= 15) {
            if (!s.empty()) std::memcpy(buf_, s.data(), s.size());  // an empty view's data() may be null
            buf_[s.size()] = '\0';  // for size 15 this is buf_[15] = 0: the size byte doubles as the NUL
            buf_[15] = static_cast<char>(15 - s.size());
            return;
        }
        if (s.size() > UINT32_MAX) throw std::length_error("SmallString: text longer than 4 GiB");
        char* p = new char[s.size() + 1];
        std::memcpy(p, s.data(), s.size());
        p[s.size()] = '\0';
        auto n = static_cast<std::uint32_t>(s.size());
        std::memcpy(buf_, &p, sizeof p);
        std::memcpy(buf_ + sizeof p, &n, sizeof n);
        buf_[15] = static_cast<char>(kHeap);
    }
    // `s` may point into this string's own text: build the new value before freeing the old.
    void assign(std::string_view s) {
        SmallString fresh(s);
        *this = std::move(fresh);
    }

    char buf_[16];
};

static_assert(sizeof(SmallString) == 16);

}  // namespace dingbridge::agent

template <>
struct std::hash<dingbridge::agent::SmallString> {
    std::size_t operator()(const dingbridge::agent::SmallString& s) const noexcept {
        return std::hash<std::string_view>{}(s.view());
    }
};
