#include "shared/config.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

namespace dingbridge {

namespace {

std::string format_error(const std::string& file, int line, int column, const std::string& key,
                         const std::string& reason) {
    std::ostringstream out;
    out << file;
    if (line > 0) out << ':' << line << ':' << column;
    out << ": ";
    if (!key.empty()) out << key << ": ";
    out << reason;
    return out.str();
}

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

// yaml-cpp keeps the first of two equal keys and silently drops the other; a configuration
// with a repeated key almost always means an edit went to the wrong place, so refuse it.
void reject_duplicate_keys(const YAML::Node& node, const std::string& file, const std::string& path) {
    if (node.IsMap()) {
        std::set<std::string> keys;
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::string key = it->first.Scalar();
            const std::string child = path.empty() ? key : path + "." + key;
            if (!keys.insert(key).second) {
                throw ConfigError(file, it->first.Mark().line + 1, it->first.Mark().column + 1, child,
                                  "duplicate key '" + key + "'");
            }
            reject_duplicate_keys(it->second, file, child);
        }
    } else if (node.IsSequence()) {
        for (std::size_t i = 0; i < node.size(); ++i) {
            reject_duplicate_keys(node[i], file, path + "[" + std::to_string(i) + "]");
        }
    }
}

}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key, std::string reason)
    : std::runtime_error(format_error(file, line, column, key, reason)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      reason_(std::move(reason)) {}

std::optional<std::chrono::milliseconds> parse_duration(const std::string& input) {
    const std::string text = trim(input);
    if (text.empty()) return std::nullopt;
    std::uint64_t total_ms = 0;
    size_t i = 0;
    while (i < text.size()) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) return std::nullopt;
        std::uint64_t number = 0;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
            number = number * 10 + static_cast<unsigned>(text[i] - '0');
            if (number > 1000000000ULL) return std::nullopt;
            ++i;
        }
        size_t unit_start = i;
        while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
        const std::string unit = text.substr(unit_start, i - unit_start);
        std::uint64_t factor;
        if (unit == "ms")
            factor = 1;
        else if (unit == "s")
            factor = 1000;
        else if (unit == "m")
            factor = 60 * 1000;
        else if (unit == "h")
            factor = 3600 * 1000;
        else if (unit == "d")
            factor = 86400 * 1000;
        else
            return std::nullopt;
        total_ms += number * factor;
        if (total_ms > 100ULL * 365 * 86400 * 1000) return std::nullopt;
    }
    return std::chrono::milliseconds(total_ms);
}

std::optional<std::uint64_t> parse_size(const std::string& input) {
    const std::string text = trim(input);
    size_t i = 0;
    std::uint64_t number = 0;
    if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return std::nullopt;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
        number = number * 10 + static_cast<unsigned>(text[i] - '0');
        if (number > (1ULL << 50)) return std::nullopt;
        ++i;
    }
    std::string unit = trim(text.substr(i));
    std::uint64_t factor;
    if (unit.empty() || unit == "B")
        factor = 1;
    else if (unit == "KiB")
        factor = 1ULL << 10;
    else if (unit == "MiB")
        factor = 1ULL << 20;
    else if (unit == "GiB")
        factor = 1ULL << 30;
    else if (unit == "KB" || unit == "kB")
        factor = 1000;
    else if (unit == "MB")
        factor = 1000 * 1000;
    else if (unit == "GB")
        factor = 1000 * 1000 * 1000;
    else
        return std::nullopt;
    if (number > std::numeric_limits<std::uint64_t>::max() / factor) return std::nullopt;
    return number * factor;
}

std::string resolve_secret(const std::string& value) {
    const std::string v = trim(value);
    if (v.size() < 4 || v.rfind("${", 0) != 0 || v.back() != '}') return value;
    const std::string ref = v.substr(2, v.size() - 3);
    if (ref.rfind("env:", 0) == 0) {
        const std::string name = ref.substr(4);
        const char* env = name.empty() ? nullptr : std::getenv(name.c_str());
        if (env == nullptr) throw std::runtime_error("environment variable " + name + " is not set");
        return env;
    }
    if (ref.rfind("file:", 0) == 0) {
        const std::string path = ref.substr(5);
        std::ifstream in(path, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read secret file " + path);
        std::stringstream buf;
        buf << in.rdbuf();
        std::string content = buf.str();
        while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
        return content;
    }
    throw std::runtime_error("unknown secret reference kind (use ${env:NAME} or ${file:/path})");
}

ConfigNode::ConfigNode(YAML::Node node, std::shared_ptr<const std::string> file, std::string path)
    : node_(std::move(node)),
      file_(std::move(file)),
      path_(std::move(path)),
      seen_(std::make_shared<std::set<std::string>>()) {}

ConfigNode ConfigNode::load_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw ConfigError(path, 0, 0, "", "cannot open file");
    std::stringstream buf;
    buf << in.rdbuf();
    return load_string(buf.str(), path);
}

ConfigNode ConfigNode::load_string(const std::string& text, const std::string& name) {
    auto file = std::make_shared<const std::string>(name);
    try {
        YAML::Node root = YAML::Load(text);
        if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
        reject_duplicate_keys(root, name, "");
        ConfigNode node(root, file, "");
        if (!root.IsMap()) node.fail("the top level must be a mapping of keys");
        return node;
    } catch (const YAML::Exception& e) {
        throw ConfigError(name, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg);
    }
}

int ConfigNode::line() const { return node_.IsDefined() ? node_.Mark().line + 1 : 0; }
int ConfigNode::column() const { return node_.IsDefined() ? node_.Mark().column + 1 : 0; }

std::string must_be_one_of(const std::vector<const char*>& names) {
    std::string s = "must be";
    for (std::size_t i = 0; i < names.size(); ++i)
        s += std::string(i == 0 ? " " : i + 1 == names.size() ? " or " : ", ") + names[i];
    return s;
}

void ConfigNode::fail(const std::string& reason) const {
    int l = line(), c = column();
    if (l <= 0) {
        l = 0;
        c = 0;
    }
    throw ConfigError(*file_, l, c, path_, reason);
}

std::string ConfigNode::child_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

bool ConfigNode::has(const std::string& key) const {
    seen_->insert(key);
    return node_.IsMap() && node_[key].IsDefined();
}

ConfigNode ConfigNode::get(const std::string& key) const {
    if (!node_.IsMap()) fail("expected a mapping");
    seen_->insert(key);
    YAML::Node child = node_[key];
    if (!child.IsDefined()) fail("missing required key '" + key + "'");
    return ConfigNode(child, file_, child_path(key));
}

std::optional<ConfigNode> ConfigNode::find(const std::string& key) const {
    if (!node_.IsMap()) fail("expected a mapping");
    seen_->insert(key);
    YAML::Node child = node_[key];
    if (!child.IsDefined() || child.IsNull()) return std::nullopt;
    return ConfigNode(child, file_, child_path(key));
}

std::vector<ConfigNode> ConfigNode::items() const {
    std::vector<ConfigNode> out;
    if (is_null()) return out;
    if (!node_.IsSequence()) fail("expected a list");
    for (size_t i = 0; i < node_.size(); ++i) {
        out.emplace_back(node_[i], file_, path_ + "[" + std::to_string(i) + "]");
    }
    return out;
}

std::string ConfigNode::as_string() const {
    if (!node_.IsScalar()) fail("expected a string value");
    return node_.Scalar();
}

bool ConfigNode::as_bool() const {
    if (!node_.IsScalar()) fail("expected true or false");
    const std::string& s = node_.Scalar();
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
    fail("expected true or false, got '" + s + "'");
}

std::int64_t ConfigNode::as_int(std::int64_t min, std::int64_t max) const {
    const std::string s = as_string();
    std::int64_t value = 0;
    size_t i = 0;
    bool negative = false;
    if (!s.empty() && s[0] == '-') {
        negative = true;
        i = 1;
    }
    if (i >= s.size()) fail("expected an integer, got '" + s + "'");
    for (; i < s.size(); ++i) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) fail("expected an integer, got '" + s + "'");
        if (value > (std::numeric_limits<std::int64_t>::max() - 9) / 10) fail("integer out of range");
        value = value * 10 + (s[i] - '0');
    }
    if (negative) value = -value;
    if (value < min || value > max) {
        fail("must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + s);
    }
    return value;
}

std::chrono::milliseconds ConfigNode::as_duration() const {
    const std::string s = as_string();
    auto d = parse_duration(s);
    if (!d) fail("invalid duration '" + s + "' (use a number with a unit: 500ms, 30s, 5m, 2h, 1d)");
    return *d;
}

std::uint64_t ConfigNode::as_size() const {
    const std::string s = as_string();
    auto v = parse_size(s);
    if (!v) fail("invalid size '" + s + "' (use bytes or a unit: 8KiB, 4MiB, 1GiB)");
    return *v;
}

std::vector<std::string> ConfigNode::as_string_list() const {
    std::vector<std::string> out;
    for (const auto& item : items()) out.push_back(item.as_string());
    return out;
}

std::string ConfigNode::as_secret() const {
    const std::string raw = as_string();
    try {
        return resolve_secret(raw);
    } catch (const std::exception& e) {
        fail(e.what());
    }
}

std::string ConfigNode::get_string(const std::string& key, const std::string& fallback) const {
    auto n = find(key);
    return n ? n->as_string() : fallback;
}

bool ConfigNode::get_bool(const std::string& key, bool fallback) const {
    auto n = find(key);
    return n ? n->as_bool() : fallback;
}

std::chrono::milliseconds ConfigNode::get_duration(const std::string& key, std::chrono::milliseconds fallback) const {
    auto n = find(key);
    return n ? n->as_duration() : fallback;
}

std::uint64_t ConfigNode::get_size(const std::string& key, std::uint64_t fallback) const {
    auto n = find(key);
    return n ? n->as_size() : fallback;
}

void ConfigNode::reject_unknown() const {
    if (!node_.IsMap()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
        const std::string key = it->first.Scalar();
        if (seen_->count(key) == 0) {
            std::string valid;
            for (const auto& k : *seen_) valid += (valid.empty() ? "" : ", ") + k;
            ConfigNode bad(it->first, file_, child_path(key));
            bad.fail("unknown key '" + key + "'" + (valid.empty() ? "" : " (valid keys here: " + valid + ")"));
        }
    }
}

}  // namespace dingbridge
