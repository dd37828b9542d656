// The console's only script and stylesheet, served from the agent itself (no CDN, no framework;
// the CSP allows scripts and styles from 'self' only, and no inline ones).
#include "agent/web/console_parts.h"

namespace dingbridge::agent::web {

namespace {

const char* kScript = R"JS('use strict';
// Live progress: every [data-live-run] block whose run is running polls /api/runs/ID each second
// and updates its [data-count] cells and the page's status badges, until the run ends.
(function () {
  function setStatus(status) {
    document.querySelectorAll('[data-status]').forEach(function (b) {
      if (b.closest('#runs') || b.closest('#last-full')) return;
      var labels = {};
      (b.getAttribute('data-labels') || '').split('|').forEach(function (kv) {
        var i = kv.indexOf('='); if (i > 0) labels[kv.slice(0, i)] = kv.slice(i + 1);
      });
      b.textContent = labels[status] || status;
      b.className = 'badge s-' + status;
      b.setAttribute('data-status', status);
    });
  }
  function seconds(ms) { return (ms / 1000).toFixed(1) + ' s'; }
  function poll(block) {
    var id = block.getAttribute('data-live-run');
    fetch('/api/runs/' + encodeURIComponent(id), {cache: 'no-store', credentials: 'same-origin'})
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (run) {
        block.querySelectorAll('[data-count]').forEach(function (cell) {
          var k = cell.getAttribute('data-count');
          if (run.counts && k in run.counts) cell.textContent = String(run.counts[k]);
        });
        var started = Date.parse(run.started_at);
        var end = run.finished_at ? Date.parse(run.finished_at) : Date.now();
        var el = block.querySelector('[data-elapsed]');
        if (el && !isNaN(started)) el.textContent = seconds(end - started);
        block.setAttribute('data-run-status', run.status);
        block.setAttribute('data-polls', String(Number(block.getAttribute('data-polls') || 0) + 1));
        if (document.querySelector('[data-finished]') && run.finished_at)
          document.querySelector('[data-finished]').textContent = run.finished_at;
        setStatus(run.status);
        if (run.status === 'running') setTimeout(function () { poll(block); }, 1000);
      })
      .catch(function () { setTimeout(function () { poll(block); }, 5000); });
  }
  document.querySelectorAll('[data-live-run]').forEach(function (block) {
    if (block.getAttribute('data-run-status') === 'running') setTimeout(function () { poll(block); }, 1000);
  });
})();
// Item filter: narrows the rows as one types or picks a phase or object kind (the form also
// works without JavaScript, through the server).
(function () {
  var table = document.getElementById('items');
  if (!table) return;
  var q = document.getElementById('filter-q');
  var phase = document.getElementById('filter-phase');
  var type = document.getElementById('filter-type');
  function apply() {
    var text = (q.value || '').toLowerCase(), n = 0;
    table.querySelectorAll('tbody tr').forEach(function (row) {
      var keep = (!text || row.textContent.toLowerCase().indexOf(text) >= 0) &&
                 (!phase.value || row.getAttribute('data-phase') === phase.value) &&
                 (!type.value || row.getAttribute('data-type') === type.value);
      row.hidden = !keep;
      if (keep) n++;
    });
    document.getElementById('shown').textContent = String(n);
  }
  [q, phase, type].forEach(function (el) { el.addEventListener('input', apply); el.addEventListener('change', apply); });
})();
)JS";

const char* kStyle =
    R"CSS(body{font:14px/1.45 system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{display:flex;justify-content:space-between;align-items:center;padding:10px 24px;background:#1d3b6f;color:#fff}
header a{color:#fff;text-decoration:none}.brand{font-weight:600;font-size:16px}
main{padding:16px 24px;max-width:1400px}h1{font-size:20px}h2{font-size:16px;margin:18px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #e3e6eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num{text-align:right}td.bad,.bad{color:#b42318;font-weight:600}.ok{color:#067647;font-weight:600}
td.msg{min-width:260px;max-width:480px;word-break:break-word;color:#444}code{font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e3e6eb}
.s-succeeded{background:#d1fadf;color:#05603a}.s-partial{background:#fef0c7;color:#93370d}.s-failed{background:#fee4e2;color:#912018}
.s-aborted{background:#fbe8ff;color:#821890}.s-running{background:#d1e9ff;color:#1849a9}.s-deferred{background:#eaecf0}
.cards{display:flex;gap:16px;flex-wrap:wrap}.card{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:8px 16px;min-width:260px;flex:1}
.card.wide{flex-basis:100%}.big{font-size:22px;font-weight:600;margin:4px 0}meter{width:100%;height:14px}
dl{display:flex;flex-wrap:wrap;gap:6px 24px;margin:6px 0}dl div{min-width:120px}dt{color:#667085;font-size:12px}dd{margin:0;font-weight:600}
.live dd{font-size:18px}.facts dd{font-weight:400}
svg.chart{width:100%;max-width:900px;background:#fff;border:1px solid #e3e6eb}
rect.bar{fill:#98a2b3}rect.s-succeeded{fill:#32d583}rect.s-partial{fill:#fdb022}rect.s-failed{fill:#f04438}
rect.s-aborted{fill:#d444f1}rect.s-running{fill:#53b1fd}.axis{stroke:#98a2b3}.tick{font-size:10px;fill:#667085}
form.filter{margin:8px 0}.count{color:#667085}.name{color:#1d3b6f}
)CSS";

}  // namespace

WebReply static_asset(const std::string& path) {
    WebReply r;
    if (path == "/static/console.js")
        r = {200, "text/javascript; charset=utf-8", kScript, {}};
    else if (path == "/static/console.css")
        r = {200, "text/css; charset=utf-8", kStyle, {}};
    else
        return {404, "text/plain; charset=utf-8", "not found\n", {}};
    return r;
}

}  // namespace dingbridge::agent::web
