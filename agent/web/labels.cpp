#include "agent/web/labels.h"

#include <cctype>
#include <map>

namespace dingbridge::agent::web {

namespace {

struct Pair {
    const char* en;
    const char* zh;
};

// Data, not logic: one entry a line.
const std::map<std::string, Pair> kTable = {
    {"title", {"dingbridge-agent console", "钉钉通讯录同步控制台"}},
    {"runs", {"Runs", "同步记录"}},
    {"run", {"Run", "同步"}},
    {"kind", {"Kind", "类型"}},
    {"trigger", {"Trigger", "触发"}},
    {"status", {"Status", "状态"}},
    {"started", {"Started (UTC)", "开始时间 (UTC)"}},
    {"finished", {"Finished (UTC)", "结束时间 (UTC)"}},
    {"duration", {"Duration", "耗时"}},
    {"fetched", {"Fetched dept/users", "已读取 部门/用户"}},
    {"changes", {"Changes applied/planned", "变更 已应用/计划"}},
    {"failed", {"Failed", "失败"}},
    {"skipped", {"Skipped", "跳过"}},
    {"calls", {"API calls", "API 调用"}},
    {"message", {"Message", "信息"}},
    {"full", {"full", "全量"}},
    {"event", {"event", "事件"}},
    {"running", {"running", "运行中"}},
    {"succeeded", {"succeeded", "成功"}},
    {"partial", {"partial", "部分失败"}},
    {"failed_status", {"failed", "失败"}},
    {"aborted", {"aborted (safeguard)", "已中止 (安全阈值)"}},
    {"deferred", {"deferred (budget)", "已推迟 (预算)"}},
    {"no_runs", {"No runs yet.", "暂无同步记录。"}},
    {"events", {"Event stream", "事件流"}},
    {"connected", {"Connected", "已连接"}},
    {"disconnected", {"Not connected", "未连接"}},
    {"not_here", {"Run mode is not in this process", "本进程未运行事件模式"}},
    {"heartbeat", {"Run mode heartbeat", "事件模式心跳"}},
    {"lag", {"Lag (oldest pending event)", "延迟 (最早待处理事件)"}},
    {"pending", {"Pending events", "待处理事件"}},
    {"given_up", {"Left to the next full sync", "留待下次全量同步"}},
    {"last_event", {"Last event", "最近事件"}},
    {"received", {"Events received", "已接收事件"}},
    {"budget", {"API calls this month", "本月 API 调用"}},
    {"of_budget", {"of the monthly budget", "月度预算"}},
    {"unlimited", {"no budget set", "未设置预算"}},
    {"last_full", {"Last full sync", "最近全量同步"}},
    {"never", {"never", "从未"}},
    {"chart", {"Runs over time (bar height: duration)", "同步趋势 (柱高：耗时)"}},
    {"live", {"Running now", "正在运行"}},
    {"progress", {"Progress", "进度"}},
    {"plan", {"Plan", "计划"}},
    {"errors", {"Item errors", "条目错误"}},
    {"search", {"Search", "搜索"}},
    {"all", {"all", "全部"}},
    {"phase", {"Phase", "阶段"}},
    {"object", {"Object", "对象"}},
    {"operation", {"Operation", "操作"}},
    {"api", {"API", "接口"}},
    {"errcode", {"errcode", "错误码"}},
    {"errmsg", {"errmsg", "错误信息"}},
    {"request_id", {"Request id", "请求 ID"}},
    {"time", {"Time (UTC)", "时间 (UTC)"}},
    {"filter", {"Filter", "筛选"}},
    {"shown", {"items shown", "条显示"}},
    {"no_items", {"No failed or skipped items.", "没有失败或跳过的条目。"}},
    {"back", {"All runs", "全部同步记录"}},
    {"not_found", {"No such run.", "没有这条同步记录。"}},
    {"departments", {"Departments", "部门"}},
    {"users", {"Users", "用户"}},
    {"create", {"created", "新建"}},
    {"update", {"updated", "更新"}},
    {"delete", {"deleted", "删除"}},
    {"disable", {"disabled", "停用"}},
    {"departments_fetched", {"departments fetched", "已读取部门"}},
    {"users_fetched", {"users fetched", "已读取用户"}},
    {"requests", {"API calls", "API 调用"}},
    {"changes_planned", {"changes planned", "计划变更"}},
    {"changes_applied", {"changes applied", "已应用变更"}},
    {"items_failed", {"items failed", "失败条目"}},
    {"items_skipped", {"items skipped", "跳过条目"}},
    {"retries", {"retries", "重试"}},
    {"throttled", {"throttled", "限流"}},
    {"dry_run", {"dry run", "演练"}},
    {"state_missing",
     {"The state database is not readable yet (no sync has run?)", "状态数据库尚不可读（还没有同步过？）"}},
    {"language", {"中文", "English"}},
};

}  // namespace

Lang pick_lang(const std::string& query_lang, const std::string& accept_language) {
    if (query_lang == "zh") return Lang::zh;
    if (query_lang == "en") return Lang::en;
    // The first language the browser lists decides (quality values are not weighed).
    std::string first = accept_language.substr(0, accept_language.find_first_of(",;"));
    while (!first.empty() && std::isspace(static_cast<unsigned char>(first.front()))) first.erase(0, 1);
    return first.size() >= 2 && std::tolower(static_cast<unsigned char>(first[0])) == 'z' &&
                   std::tolower(static_cast<unsigned char>(first[1])) == 'h'
               ? Lang::zh
               : Lang::en;
}

std::string label(Lang lang, const std::string& key) {
    auto it = kTable.find(key);
    if (it == kTable.end()) return key;
    return lang == Lang::zh ? it->second.zh : it->second.en;
}

}  // namespace dingbridge::agent::web
