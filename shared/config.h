#pragma once
// YAML configuration helpers shared by both programs.
//
// A ConfigError carries the file, line and column of the offending node plus the key path, so
// that every configuration mistake is reported as `file:line:col: key: reason`. Loading throws
// ConfigError; callers turn it into one message and a non-zero exit (or, on reload, a log line).
// ConfigNode wraps a yaml-cpp node together with its file and key path; reading a key marks it
// used so that `reject_unknown()` can refuse typos. Not thread-safe; used only while loading.

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dingbridge {

class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string file, int line, int column, std::string key, std::string reason);

    const std::string& file() const { return file_; }
    int line() const { return line_; }
    int column() const { return column_; }
    const std::string& key() const { return key_; }
    const std::string& reason() const { return reason_; }

private:
    std::string file_;
    int line_;
    int column_;
    std::string key_;
    std::string reason_;
};

// Parses "30s", "5m", "2h", "1d", "250ms", "1h30m". A bare number is refused: units are required
// so that nobody wonders whether `timeout: 30` means seconds or milliseconds.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

// Parses "512", "8KiB", "4MiB", "1GiB", "10KB" (KB = 1000). Returns bytes.
std::optional<std::uint64_t> parse_size(const std::string& text);

// "must be a, b or c": the reason for a value that is none of `names`.
std::string must_be_one_of(const std::vector<const char*>& names);

class ConfigNode {
public:
    ConfigNode(YAML::Node node, std::shared_ptr<const std::string> file, std::string path);

    // Loads and parses a YAML file; syntax errors become ConfigError with the parser's position.
    static ConfigNode load_file(const std::string& path);
    static ConfigNode load_string(const std::string& text, const std::string& name);

    bool is_map() const { return node_.IsMap(); }
    bool is_sequence() const { return node_.IsSequence(); }
    bool is_scalar() const { return node_.IsScalar(); }
    bool is_null() const { return !node_.IsDefined() || node_.IsNull(); }
    bool has(const std::string& key) const;

    // Child access; `get` throws when the key is missing, `find` returns nullopt.
    ConfigNode get(const std::string& key) const;
    std::optional<ConfigNode> find(const std::string& key) const;
    std::vector<ConfigNode> items() const;  // sequence elements

    std::string as_string() const;
    bool as_bool() const;
    std::int64_t as_int(std::int64_t min, std::int64_t max) const;
    std::chrono::milliseconds as_duration() const;
    std::uint64_t as_size() const;
    std::vector<std::string> as_string_list() const;
    // A string naming one of `choices` (name, value): that value; anything else fails with
    // "must be a, b or c".
    template <class T, std::size_t N>
    T as_choice(const std::pair<const char*, T> (&choices)[N]) const {
        const std::string v = as_string();
        std::vector<const char*> names;
        for (const auto& choice : choices) {
            if (v == choice.first) return choice.second;
            names.push_back(choice.first);
        }
        fail(must_be_one_of(names));
    }
    // Resolves `${env:NAME}` and `${file:/path}` references; the value itself is never part of
    // any error message.
    std::string as_secret() const;

    std::string get_string(const std::string& key, const std::string& fallback) const;
    bool get_bool(const std::string& key, bool fallback) const;
    std::chrono::milliseconds get_duration(const std::string& key, std::chrono::milliseconds fallback) const;
    std::uint64_t get_size(const std::string& key, std::uint64_t fallback) const;

    // Throws for any key of this map that no get/find/has call has asked for.
    void reject_unknown() const;

    [[noreturn]] void fail(const std::string& reason) const;
    const std::string& path() const { return path_; }
    const std::string& file() const { return *file_; }
    int line() const;
    int column() const;

private:
    std::string child_path(const std::string& key) const;

    YAML::Node node_;
    std::shared_ptr<const std::string> file_;
    std::string path_;
    std::shared_ptr<std::set<std::string>> seen_;
};

// Resolves one secret reference; plain strings are returned unchanged. Throws std::runtime_error
// naming the reference (never the value) when the variable or file is missing.
std::string resolve_secret(const std::string& value);

}  // namespace dingbridge
