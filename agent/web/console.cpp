#include "agent/web/console.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "agent/events/journal.h"
#include "agent/web/console_parts.h"
#include "shared/log.h"

namespace dingbridge::agent::web {

namespace {

struct Page {
    const ConsoleContext& ctx;
    Lang lang;
    std::string lang_q;  // "lang=xx"
    std::string t(const std::string& key) const { return html_escape(label(lang, key)); }
};

std::map<std::string, std::string> parse_query(const std::string& q) {
    std::map<std::string, std::string> out;
    auto unhex = [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10);
    };
    std::size_t pos = 0;
    while (pos <= q.size()) {
        std::size_t amp = q.find('&', pos);
        std::string kv = q.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
        std::string decoded;
        for (std::size_t i = 0; i < kv.size(); ++i) {
            if (kv[i] == '+')
                decoded += ' ';
            else if (kv[i] == '%' && i + 2 < kv.size() + 0 && std::isxdigit(static_cast<unsigned char>(kv[i + 1])) &&
                     std::isxdigit(static_cast<unsigned char>(kv[i + 2]))) {
                decoded += static_cast<char>(unhex(kv[i + 1]) * 16 + unhex(kv[i + 2]));
                i += 2;
            } else
                decoded += kv[i];
        }
        const std::size_t eq = decoded.find('=');
        if (!decoded.empty()) out[decoded.substr(0, eq)] = eq == std::string::npos ? "" : decoded.substr(eq + 1);
        if (amp == std::string::npos) break;
        pos = amp + 1;
    }
    return out;
}

std::string status_key(const std::string& s) { return s == "failed" ? "failed_status" : s; }

}  // namespace

std::string fmt_duration(std::int64_t ms) {
    if (ms < 0) return "";
    char b[64];
    if (ms < 60000)
        std::snprintf(b, sizeof b, "%.1f s", static_cast<double>(ms) / 1000.0);
    else
        std::snprintf(b, sizeof b, "%lld min %lld s", static_cast<long long>(ms / 60000),
                      static_cast<long long>(ms % 60000 / 1000));
    return b;
}

std::int64_t run_ms(const RunRecord& r) {
    const std::int64_t s = iso_to_ms(r.started_at);
    const std::int64_t e = r.finished_at.empty() ? events::now_ms() : iso_to_ms(r.finished_at);
    return s > 0 && e >= s ? e - s : -1;
}

std::string ago(std::int64_t ms, Lang lang) {
    if (ms <= 0) return label(lang, "never");
    const std::int64_t s = std::max<std::int64_t>(0, (events::now_ms() - ms) / 1000);
    return std::to_string(s) + (lang == Lang::zh ? " 秒前" : " s ago");
}

std::string console_head(Lang lang, const std::string& lang_q, const std::string& title) {
    auto t = [&](const char* k) { return html_escape(label(lang, k)); };
    return "<!DOCTYPE html><html lang=\"" + std::string(lang == Lang::zh ? "zh-CN" : "en") +
           "\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">"
           "<title>" +
           html_escape(title) +
           "</title><link rel=\"stylesheet\" href=\"/static/console.css\">"
           "<script src=\"/static/console.js\" defer></script></head><body><header><a class=\"brand\" href=\"/?" +
           lang_q + "\">" + t("title") + "</a><a class=\"lang\" href=\"?lang=" + (lang == Lang::zh ? "en" : "zh") +
           "\">" + t("language") + "</a></header><main>";
}

std::string console_badge(Lang lang, const std::string& status) {
    std::string labels;  // console.js shows a status that changes while one watches in this language
    for (const char* s : {"running", "succeeded", "partial", "failed", "aborted", "deferred"})
        labels += std::string(labels.empty() ? "" : "|") + s + "=" + label(lang, status_key(s));
    return "<span class=\"badge s-" + html_escape(status) + "\" data-status=\"" + html_escape(status) +
           "\" data-labels=\"" + html_escape(labels) + "\">" + html_escape(label(lang, status_key(status))) + "</span>";
}

// The live counters of a running run: console.js polls /api/runs/ID and updates [data-count].
std::string console_live(Lang lang, const RunRecord& r) {
    auto t = [&](const char* k) { return html_escape(label(lang, k)); };
    std::string s = "<div class=\"live\" data-live-run=\"" + std::to_string(r.id) + "\" data-run-status=\"" +
                    html_escape(r.status) + "\"><dl>";
    const std::pair<const char*, std::int64_t> cs[] = {{"departments_fetched", r.counters.departments_fetched},
                                                       {"users_fetched", r.counters.users_fetched},
                                                       {"requests", r.counters.requests},
                                                       {"changes_planned", r.counters.changes_planned},
                                                       {"changes_applied", r.counters.changes_applied},
                                                       {"items_failed", r.counters.items_failed}};
    for (const auto& [k, v] : cs)
        s += "<div><dt>" + t(k) + "</dt><dd data-count=\"" + k + "\">" + std::to_string(v) + "</dd></div>";
    return s + "</dl><p class=\"elapsed\" data-elapsed>" + html_escape(fmt_duration(run_ms(r))) + "</p></div>";
}

namespace {

std::string status_badge(const Page& p, const std::string& status) { return console_badge(p.lang, status); }

std::string runs_table(const Page& p, const std::vector<RunRecord>& runs) {
    if (runs.empty()) return "<p class=\"empty\">" + p.t("no_runs") + "</p>";
    std::string s = "<table id=\"runs\"><thead><tr><th>#</th><th>" + p.t("kind") + "</th><th>" + p.t("trigger") +
                    "</th><th>" + p.t("status") + "</th><th>" + p.t("started") + "</th><th>" + p.t("duration") +
                    "</th><th>" + p.t("fetched") + "</th><th>" + p.t("changes") + "</th><th>" + p.t("failed") +
                    "</th><th>" + p.t("skipped") + "</th><th>" + p.t("calls") + "</th></tr></thead><tbody>";
    for (const auto& r : runs) {
        const auto& c = r.counters;
        s += "<tr data-run=\"" + std::to_string(r.id) + "\"><td><a href=\"/runs/" + std::to_string(r.id) + "?" +
             p.lang_q + "\">" + std::to_string(r.id) + "</a></td><td>" + p.t(r.kind) +
             (r.dry_run ? " (" + p.t("dry_run") + ")" : "") + "</td><td>" + html_escape(r.trigger) + "</td><td>" +
             status_badge(p, r.status) + "</td><td>" + html_escape(r.started_at) + "</td><td>" +
             html_escape(fmt_duration(run_ms(r))) + "</td><td>" + std::to_string(c.departments_fetched) + " / " +
             std::to_string(c.users_fetched) + "</td><td>" + std::to_string(c.changes_applied) + " / " +
             std::to_string(c.changes_planned) + "</td><td class=\"num" + (c.items_failed ? " bad" : "") + "\">" +
             std::to_string(c.items_failed) + "</td><td class=\"num\">" + std::to_string(c.items_skipped) +
             "</td><td class=\"num\">" + std::to_string(c.requests) + "</td></tr>";
    }
    return s + "</tbody></table>";
}

// Bars oldest to newest: height = duration (scaled to the longest), colour = status (CSS class).
std::string runs_chart(const Page& p, std::vector<RunRecord> runs) {
    std::reverse(runs.begin(), runs.end());
    if (runs.size() > 60) runs.erase(runs.begin(), runs.end() - 60);
    std::int64_t longest = 1;
    for (const auto& r : runs) longest = std::max(longest, run_ms(r));
    const int w = 720, h = 160,
              bw = std::max(4, std::min(24, (w - 40) / std::max<int>(1, static_cast<int>(runs.size()))));
    std::string s = "<svg class=\"chart\" viewBox=\"0 0 " + std::to_string(w) + " " + std::to_string(h + 30) +
                    "\" role=\"img\" aria-label=\"" + p.t("chart") + "\"><line class=\"axis\" x1=\"30\" y1=\"" +
                    std::to_string(h) + "\" x2=\"" + std::to_string(w) + "\" y2=\"" + std::to_string(h) + "\"/>";
    s += "<text class=\"tick\" x=\"0\" y=\"12\">" + html_escape(fmt_duration(longest)) + "</text>";
    int x = 34;
    for (const auto& r : runs) {
        const int bh = std::max(2, static_cast<int>(static_cast<double>(std::max<std::int64_t>(0, run_ms(r))) /
                                                    static_cast<double>(longest) * (h - 10)));
        s += "<a href=\"/runs/" + std::to_string(r.id) + "?" + p.lang_q + "\"><rect class=\"bar s-" +
             html_escape(r.status) + "\" x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(h - bh) +
             "\" width=\"" + std::to_string(bw - 2) + "\" height=\"" + std::to_string(bh) + "\"><title>#" +
             std::to_string(r.id) + " " + p.t(r.kind) + " " + p.t(status_key(r.status)) + " " +
             html_escape(r.started_at) + " " + html_escape(fmt_duration(run_ms(r))) + "</title></rect></a>";
        if (runs.size() <= 30 || r.id % 5 == 0)
            s += "<text class=\"tick\" x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(h + 16) + "\">" +
                 std::to_string(r.id) + "</text>";
        x += bw;
    }
    return s + "</svg>";
}

std::string events_panel(const Page& p, HistoryView& view) {
    const EventState e = view.events();
    std::string s = "<section class=\"card\" id=\"events\"><h2>" + p.t("events") + "</h2><dl>";
    if (p.ctx.live) {
        const LiveState l = p.ctx.live();
        s += "<div><dt>" + p.t("status") + "</dt><dd class=\"" + (l.connected ? "ok" : "bad") + "\">" +
             p.t(l.connected ? "connected" : "disconnected") + " (" + html_escape(l.mode) + ")</dd></div>";
        s += "<div><dt>" + p.t("received") + "</dt><dd>" + std::to_string(l.events_received) + "</dd></div>";
    } else {
        s += "<div><dt>" + p.t("status") + "</dt><dd>" + p.t("not_here") + "</dd></div><div><dt>" + p.t("heartbeat") +
             "</dt><dd>" + html_escape(ago(e.last_alive_ms, p.lang)) + "</dd></div>";
    }
    s += "<div><dt>" + p.t("lag") + "</dt><dd data-lag>" +
         (e.oldest_pending_ms ? html_escape(fmt_duration(events::now_ms() - e.oldest_pending_ms)) : "0 s") +
         "</dd></div>";
    s += "<div><dt>" + p.t("pending") + "</dt><dd>" + std::to_string(e.pending) + "</dd></div><div><dt>" +
         p.t("given_up") + "</dt><dd>" + std::to_string(e.given_up) + "</dd></div><div><dt>" + p.t("last_event") +
         "</dt><dd>" + html_escape(ago(e.newest_received_ms, p.lang)) + "</dd></div>";
    return s + "</dl></section>";
}

std::string budget_panel(const Page& p, HistoryView& view) {
    const std::int64_t used = view.calls_in_month(events::Journal::this_month());
    const std::int64_t budget = p.ctx.config->monthly_call_budget;
    std::string s = "<section class=\"card\" id=\"budget\"><h2>" + p.t("budget") + "</h2><p class=\"big\">" +
                    std::to_string(used) + (budget > 0 ? " / " + std::to_string(budget) : "") + "</p>";
    if (budget > 0) {
        s += "<meter min=\"0\" max=\"" + std::to_string(budget) + "\" low=\"" + std::to_string(budget * 7 / 10) +
             "\" high=\"" + std::to_string(budget * 9 / 10) + "\" optimum=\"0\" value=\"" +
             std::to_string(std::min(used, budget)) + "\"></meter><p>" + std::to_string(used * 100 / budget) + "% " +
             p.t("of_budget") + "</p>";
    } else {
        s += "<p>" + p.t("unlimited") + "</p>";
    }
    s += "</section><section class=\"card\" id=\"last-full\"><h2>" + p.t("last_full") + "</h2>";
    if (auto r = view.last_full())
        s += "<p><a href=\"/runs/" + std::to_string(r->id) + "?" + p.lang_q + "\">#" + std::to_string(r->id) + "</a> " +
             status_badge(p, r->status) + "</p><p>" + html_escape(r->finished_at) + "</p>";
    else
        s += "<p>" + p.t("never") + "</p>";
    return s + "</section>";
}

WebReply index_page(const Page& p) {
    HistoryView view(p.ctx.state_db);
    std::string s = console_head(p.lang, p.lang_q, label(p.lang, "title"));
    if (!view.ok()) s += "<p class=\"bad\">" + p.t("state_missing") + "</p>";
    auto runs = view.runs(p.ctx.config->web.runs_shown);
    for (const auto& r : runs)
        if (r.status == "running")
            s += "<section class=\"card wide\" id=\"running\"><h2>" + p.t("live") + ": <a href=\"/runs/" +
                 std::to_string(r.id) + "?" + p.lang_q + "\">#" + std::to_string(r.id) + "</a> " +
                 status_badge(p, r.status) + "</h2>" + console_live(p.lang, r) + "</section>";
    s += "<div class=\"cards\">" + events_panel(p, view) + budget_panel(p, view) + "</div>";
    s += "<section><h2>" + p.t("chart") + "</h2>" + runs_chart(p, runs) + "</section>";
    s += "<section><h2>" + p.t("runs") + "</h2>" + runs_table(p, runs) + "</section></main></body></html>\n";
    return {200, "text/html; charset=utf-8", std::move(s), {}};
}

}  // namespace

std::string html_escape(const std::string& text) {
    std::string out;
    out.reserve(text.size() + 16);
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

WebReply handle_console(const ConsoleContext& ctx, const WebRequest& req) {
    auto query = parse_query(req.query);
    const Lang lang = pick_lang(query["lang"], req.accept_language);
    const std::string lang_q = std::string("lang=") + (lang == Lang::zh ? "zh" : "en");
    const std::string& path = req.path;
    if (path == "/" || path == "/index.html") return index_page(Page{ctx, lang, lang_q});
    if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n", {}};
    if (path == "/metrics") {
        std::string body = ctx.live_metrics ? ctx.live_metrics() : "";
        body += history_metrics(*ctx.config, ctx.state_db, !ctx.live_metrics);
        return {200, "text/plain; version=0.0.4; charset=utf-8", std::move(body), {}};
    }
    if (path.rfind("/static/", 0) == 0) return static_asset(path);
    std::int64_t id = 0;
    char extra = 0;
    if (std::sscanf(path.c_str(), "/runs/%lld%c", reinterpret_cast<long long*>(&id), &extra) == 1 && id > 0)
        return run_page(ctx, lang, lang_q, id, query);
    if (path == "/api/runs" ||
        std::sscanf(path.c_str(), "/api/runs/%lld%c", reinterpret_cast<long long*>(&id), &extra) == 1) {
        HistoryView view(ctx.state_db);
        std::string body;
        if (path == "/api/runs") {
            body = "[";
            for (const auto& r : view.runs(ctx.config->web.runs_shown))
                body += (body.size() > 1 ? "," : "") + run_to_json(r, false);
            body += "]";
        } else if (auto r = view.run(id)) {
            body = run_to_json(*r, true);
        } else {
            return {404, "application/json", "{\"error\":\"no such run\"}\n", {}};
        }
        return {200, "application/json", body + "\n", {}};
    }
    return {404, "text/plain; charset=utf-8", "not found\n", {}};
}

}  // namespace dingbridge::agent::web
