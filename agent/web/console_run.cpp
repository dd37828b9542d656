// The run page: counts of the plan, live progress while it runs, and every item error with a
// filter (server side through ?q=&phase=&type=, so it works without JavaScript; console.js
// filters the same rows as one types).
#include <map>
#include <set>

#include "agent/web/console_parts.h"
#include "shared/ascii.h"

namespace dingbridge::agent::web {

namespace {

struct Row {
    ItemError e;
    std::string name;
};

bool matches(const Row& r, const std::string& q, const std::string& phase, const std::string& type) {
    if (!phase.empty() && r.e.item.phase != phase) return false;
    if (!type.empty() && r.e.item.object_type != type) return false;
    if (q.empty()) return true;
    const std::string hay = ascii_lower(r.e.item.external_id + " " + r.name + " " + r.e.item.operation + " " +
                                        r.e.item.error + " " + r.e.item.object_type + " " + r.e.item.phase);
    return hay.find(ascii_lower(q)) != std::string::npos;
}

std::string plan_table(Lang lang, const RunRecord& r) {
    auto t = [&](const char* k) { return html_escape(label(lang, k)); };
    const auto& c = r.counters;
    auto n = [](std::int64_t v) { return "<td class=\"num\">" + std::to_string(v) + "</td>"; };
    return "<table id=\"plan\"><thead><tr><th></th><th>" + t("create") + "</th><th>" + t("update") + "</th><th>" +
           t("disable") + "</th><th>" + t("delete") + "</th></tr></thead><tbody><tr><th>" + t("departments") + "</th>" +
           n(c.create_department) + n(c.update_department) + "<td>-</td>" + n(c.delete_department) + "</tr><tr><th>" +
           t("users") + "</th>" + n(c.create_user) + n(c.update_user) + n(c.disable_user) + n(c.delete_user) +
           "</tr></tbody></table>";
}

std::string select(Lang lang, const char* name, const std::set<std::string>& options, const std::string& chosen) {
    std::string s = "<select name=\"" + std::string(name) + "\" id=\"filter-" + name + "\"><option value=\"\">" +
                    html_escape(label(lang, "all")) + "</option>";
    for (const auto& o : options)
        s += "<option value=\"" + html_escape(o) + "\"" + (o == chosen ? " selected" : "") + ">" + html_escape(o) +
             "</option>";
    return s + "</select>";
}

std::string filter_form(Lang lang, const std::string& lang_q, const std::vector<Row>& rows,
                        std::map<std::string, std::string>& query) {
    std::set<std::string> phases, types;
    for (const auto& r : rows) {
        phases.insert(r.e.item.phase);
        types.insert(r.e.item.object_type);
    }
    return "<form method=\"get\" class=\"filter\"><input type=\"hidden\" name=\"lang\" value=\"" + lang_q.substr(5) +
           "\"><label>" + html_escape(label(lang, "search")) +
           " <input type=\"search\" name=\"q\" id=\"filter-q\" value=\"" + html_escape(query["q"]) +
           "\"></label> <label>" + html_escape(label(lang, "phase")) + " " +
           select(lang, "phase", phases, query["phase"]) + "</label> <label>" + html_escape(label(lang, "object")) +
           " " + select(lang, "type", types, query["type"]) + "</label> <button type=\"submit\">" +
           html_escape(label(lang, "filter")) + "</button></form>";
}

std::string items_table(Lang lang, const std::vector<Row>& rows, std::map<std::string, std::string>& query) {
    auto t = [&](const char* k) { return html_escape(label(lang, k)); };
    std::string s = "<table id=\"items\"><thead><tr><th>" + t("time") + "</th><th>" + t("phase") + "</th><th>" +
                    t("object") + "</th><th>" + t("operation") + "</th><th>" + t("api") + "</th><th>" + t("errcode") +
                    "</th><th>" + t("errmsg") + "</th><th>" + t("request_id") + "</th><th>" + t("message") +
                    "</th></tr></thead><tbody>";
    std::size_t shown = 0;
    for (const auto& r : rows) {
        const bool keep = matches(r, query["q"], query["phase"], query["type"]);
        shown += keep ? 1 : 0;
        const auto& it = r.e.item;
        s += std::string("<tr") + (keep ? "" : " hidden") + " data-phase=\"" + html_escape(it.phase) +
             "\" data-type=\"" + html_escape(it.object_type) + "\"><td>" + html_escape(it.at) + "</td><td>" +
             html_escape(it.phase) + "</td><td>" + html_escape(it.object_type) + " <code>" +
             html_escape(it.external_id) + "</code>" +
             (r.name.empty() ? "" : " <span class=\"name\">" + html_escape(r.name) + "</span>") + "</td><td>" +
             html_escape(it.operation) + "</td><td><code>" + html_escape(r.e.api) + "</code></td><td>" +
             html_escape(r.e.errcode) + "</td><td>" + html_escape(r.e.errmsg) + "</td><td><code>" +
             html_escape(r.e.request_id) + "</code></td><td class=\"msg\">" + html_escape(it.error) + "</td></tr>";
    }
    return "<p class=\"count\"><span id=\"shown\">" + std::to_string(shown) + "</span> / " +
           std::to_string(rows.size()) + " " + t("shown") + "</p>" + s + "</tbody></table>";
}

}  // namespace

WebReply run_page(const ConsoleContext& ctx, Lang lang, const std::string& lang_q, std::int64_t id,
                  std::map<std::string, std::string> query) {
    HistoryView view(ctx.state_db);
    auto r = view.run(id);
    auto t = [&](const char* k) { return html_escape(label(lang, k)); };
    std::string s = console_head(lang, lang_q, label(lang, "run") + " #" + std::to_string(id));
    if (!r) return {404, "text/html; charset=utf-8", s + "<p>" + t("not_found") + "</p></main></body></html>\n", {}};
    std::vector<std::pair<std::string, std::string>> objects;
    for (const auto& it : r->items) objects.emplace_back(it.object_type, it.external_id);
    const auto names = object_names(ctx.target_db, objects);
    std::vector<Row> rows;
    for (const auto& it : r->items) {
        auto n = names.find({it.object_type, it.external_id});
        rows.push_back(Row{parse_item_error(it), n == names.end() ? "" : n->second});
    }
    s += "<p><a href=\"/?" + lang_q + "\">&larr; " + t("back") + "</a></p><h1>" + t("run") + " #" +
         std::to_string(r->id) + " " + console_badge(lang, r->status) + "</h1><dl class=\"facts\"><div><dt>" +
         t("kind") + "</dt><dd>" + t(r->kind.c_str()) + (r->dry_run ? " (" + t("dry_run") + ")" : "") +
         "</dd></div><div><dt>" + t("trigger") + "</dt><dd>" + html_escape(r->trigger) + "</dd></div><div><dt>" +
         t("started") + "</dt><dd>" + html_escape(r->started_at) + "</dd></div><div><dt>" + t("finished") +
         "</dt><dd data-finished>" + html_escape(r->finished_at) + "</dd></div><div><dt>" + t("message") + "</dt><dd>" +
         html_escape(r->message) + "</dd></div></dl>";
    s += "<section><h2>" + t(r->status == "running" ? "live" : "progress") + "</h2>" + console_live(lang, *r) +
         "</section>";
    s += "<section><h2>" + t("plan") + "</h2>" + plan_table(lang, *r) + "</section>";
    s += "<section><h2>" + t("errors") + "</h2>";
    if (rows.empty())
        s += "<p class=\"empty\">" + t("no_items") + "</p>";
    else
        s += filter_form(lang, lang_q, rows, query) + items_table(lang, rows, query);
    return {200, "text/html; charset=utf-8", s + "</section></main></body></html>\n", {}};
}

}  // namespace dingbridge::agent::web
