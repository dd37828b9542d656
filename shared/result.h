#pragma once
// Result<T>: the one error idiom inside loops (docs/development.md, "Errors"). A value or an Error
// (a message with its context already in it), marked [[nodiscard]] so that a dropped error does
// not compile quietly. Exceptions are for configuration load and startup only.
// Why not std::expected: g++ 12 has it under -std=c++23, but the fuzz build's clang 14 does not
// enable libstdc++'s <expected> (it needs C++20 concepts at level 202002). Result<void> says
// success or why not. Header-only, no allocation beyond T and the message.

#include <string>
#include <utility>
#include <variant>

namespace dingbridge {

struct Error {
    std::string message;
};

// Builds an Error: `return fail("cannot read " + path);` converts to any Result<T>.
inline Error fail(std::string message) { return Error{std::move(message)}; }

template <class T = void>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor): `return value;`
    Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor): `return fail(..);`

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    // The message; only when !ok().
    const std::string& error() const { return std::get<1>(v_).message; }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error.message)), failed_(true) {}  // NOLINT: `return fail(..);`

    bool ok() const { return !failed_; }
    explicit operator bool() const { return ok(); }
    const std::string& error() const { return error_; }

private:
    std::string error_;
    bool failed_ = false;
};

using Status = Result<void>;

}  // namespace dingbridge
